// Package systemd holds no Go code: it ships grantwatch.service, the hardened
// systemd unit for "grantwatch run", and its install notes (README.md). Its
// tests check the unit's directives and that systemd-analyze security rates its
// sandbox at an overall exposure of 2.0 or lower.
package systemd
