package store

import "testing"

func TestMeta(t *testing.T) {
	db := openTest(t, Options{})
	if v, err := db.GetMeta("absent"); v != nil || err != nil {
		t.Errorf("GetMeta(absent) = %q, %v; want nil, nil", v, err)
	}
	db.PutMeta("k", []byte("v"))
	if v, _ := db.GetMeta("k"); string(v) != "v" {
		t.Errorf("GetMeta = %q", v)
	}
	db.PutMeta("k", nil)
	if v, _ := db.GetMeta("k"); v != nil {
		t.Errorf("GetMeta after delete = %q", v)
	}
}
