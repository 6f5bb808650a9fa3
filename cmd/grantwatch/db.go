package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/grantwatch/grantwatch/daemon/api"
	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/internal/atomicfile"
	"github.com/grantwatch/grantwatch/internal/secret"
	"github.com/grantwatch/grantwatch/store"
)

func init() { extraCommands = append(extraCommands, (*app).dbCmd) }

func (a *app) dbCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "db",
		Short: "Check, back up, compact and rekey the database",
		Long: `db check and db backup work whether the daemon runs or not (through its control
socket, or on the database directly). db compact and db rekey rewrite the file and
its key: they work with the daemon stopped, and refuse to run while it runs.`,
	}
	cmd.AddCommand(a.dbCheckCmd(), a.dbBackupCmd(), a.dbCompactCmd(), a.dbRekeyCmd())
	return cmd
}

func (a *app) dbCheckCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "check [--json]",
		Short: "Verify every page and record of the database; exit 1 on damage",
		Long: `check reads the whole database: bbolt's page structure, then every grant record,
index, counter, history, outbox and import entry, and opens every sealed token with
the key. It prints what is damaged (bucket, row or grant id; never a token) and exits
1, or says the file is sound. It takes about 1 s per 200,000 grants; writes wait
while the pages are checked.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return call(cmd, a.client, func(ctx context.Context, c conn) (dbCheck, error) {
				start := time.Now()
				line := a.statusLine()
				err := c.Check(ctx, func(el time.Duration) {
					line.update("checking %s: %s", c.cfg.Daemon.DB, el.Round(time.Second))
				})
				line.end()
				took := time.Since(start).Round(time.Millisecond)
				r := dbCheck{OK: err == nil, DB: c.cfg.Daemon.DB, Seconds: took.Seconds(), took: took}
				if errors.Is(err, store.ErrCorrupt) {
					r.Damage, err = err.Error(), nil
				}
				return r, err
			}, func(out io.Writer, r dbCheck) error {
				if asJSON {
					if err := printJSON(out, r); err != nil {
						return err
					}
				} else if !r.OK {
					fmt.Fprintln(out, r.Damage)
				} else {
					fmt.Fprintf(out, "%s: no damage found (%s, checked in %s)\n", r.DB, fileSize(r.DB), r.took)
				}
				if !r.OK {
					return exitCode(1)
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, `print JSON: {"ok", "db", "seconds", "damage"}`)
	return cmd
}

// dbCheck is what db check found, as --json prints it.
type dbCheck struct {
	OK      bool    `json:"ok"`
	DB      string  `json:"db"`
	Seconds float64 `json:"seconds"`
	Damage  string  `json:"damage,omitempty"`
	took    time.Duration
}

func (a *app) dbBackupCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "backup FILE",
		Short: "Write a consistent copy of the database to FILE (mode 0600), while the daemon runs or not",
		Long: `backup writes a snapshot of the database as it stands when the backup begins: the
daemon goes on probing meanwhile. FILE is written atomically with mode 0600 (a
temporary file beside it, renamed into place once complete): it holds the old
backup or the whole new one, never a part.

The copy holds the sealed tokens and opens only with the database's key
(secrets.key_file): keep the key too, apart from the backups. README: "Backups and
restore".`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			cfg, err := a.config()
			if err != nil {
				return err
			}
			if fi, err := os.Stat(path); err == nil && fi.IsDir() {
				return fmt.Errorf("%s is a directory: name the backup file, for example %s", path, filepath.Join(path, "grantwatch-"+time.Now().Format("20060102")+".db"))
			}
			if sameFile(path, cfg.Daemon.DB) {
				return fmt.Errorf("%s is the database itself: name another file", path)
			}
			c, _, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			st, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			start := time.Now()
			var n int64
			err = atomicfile.Write(path, func(f *os.File) error {
				line := a.statusLine()
				defer line.end()
				var err error
				n, err = c.Backup(cmd.Context(), &progressCounter{w: f, show: func(n int64) {
					line.update("backing up: %s", humanBytes(n))
				}})
				return err
			})
			if err != nil {
				return fmt.Errorf("back up %s to %s (nothing written there): %w", cfg.Daemon.DB, path, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "backed up %s to %s: %s in %s, mode 0600\n",
				cfg.Daemon.DB, path, humanBytes(n), time.Since(start).Round(time.Millisecond))
			if st.Key != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "it opens with key %s only (%s): keep a copy of that key apart from the backups\n",
					st.Key.Fingerprint, cfg.Secrets.KeyFile)
			}
			return nil
		},
	}
}

func (a *app) dbCompactCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "compact",
		Short: "Rewrite the database without the space of removed grants (daemon stopped)",
		Long: `compact copies the database into a new file of full pages, checks the copy
(every page, record and token, with the key), and swaps it in for the database.
Removing grants leaves the file at its size (bbolt reuses the space, never gives
it back); compact gives it back.

It works with the daemon stopped, and refuses while it runs. The original is kept
beside it as DB.bak: remove it once grantwatch runs well on the compacted file
(compact refuses to run while a DB.bak is there, so that it never replaces an
earlier original). It needs free space for the copy.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.config()
			if err != nil {
				return err
			}
			db := cfg.Daemon.DB
			before, err := os.Stat(db)
			if err != nil {
				return fmt.Errorf("no database to compact: %w", err)
			}
			bak := db + ".bak"
			if _, err := os.Lstat(bak); err == nil {
				return fmt.Errorf("%s is there from an earlier compaction: remove it (or move it away) first; compact keeps the original there", bak)
			}
			if err := a.refuseRunningDaemon(cmd.Context(), cfg, "compact"); err != nil {
				return err
			}
			tmp := db + ".compact"
			fmt.Fprintf(a.errw, "compacting %s (%s)…\n", db, humanBytes(before.Size()))
			if err := store.Compact(db, tmp); err != nil {
				os.Remove(tmp)
				return offline(err, "compact")
			}
			// The copy is checked with the key before it replaces anything.
			if err := checkFile(cmd.Context(), tmp, cfg.Secrets.KeyFile); err != nil {
				os.Remove(tmp)
				return fmt.Errorf("the compacted copy does not check out (the database was left as it was): %w", err)
			}
			if err := swapIn(db, tmp, bak, before); err != nil {
				os.Remove(tmp)
				return err
			}
			after, _ := os.Stat(db)
			fmt.Fprintf(cmd.OutOrStdout(), "compacted %s: %s → %s; the original is kept as %s: remove it once grantwatch runs well on the compacted file\n",
				db, humanBytes(before.Size()), humanBytes(after.Size()), bak)
			return nil
		},
	}
}

func (a *app) dbRekeyCmd() *cobra.Command {
	var newKeyFile string
	cmd := &cobra.Command{
		Use:   "rekey [--new-key FILE]",
		Short: "Seal every token under a new key (daemon stopped)",
		Long: `rekey re-seals every refresh token under a new key, then makes it the configured
key: secrets.key_file gets the new key (mode 0600) and the old one is kept beside it
as KEY_FILE.old-FINGERPRINT, since backups made before the rekey open only with it.
The database records the old key's fingerprint and the time (doctor shows them).

The new key is read from --new-key FILE, or created there (random, mode 0600) when
FILE does not exist; without --new-key it is KEY_FILE.new. An interrupted rekey
(a crash, a damaged token) leaves a database that the daemon refuses to open; run
rekey again with the same new key to finish it.

It works with the daemon stopped, and refuses while it runs. Under systemd the key
is the credential's source file (/etc/grantwatch/grantwatch.key): run it as root
with the unit stopped, then start the unit.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.config()
			if err != nil {
				return err
			}
			keyFile := cfg.Secrets.KeyFile
			newPath := newKeyFile
			if newPath == "" {
				newPath = keyFile + ".new"
			}
			if sameFile(newPath, keyFile) {
				return fmt.Errorf("--new-key %s is the configured key file: name a new key's file", newPath)
			}
			if err := a.refuseRunningDaemon(cmd.Context(), cfg, "rekey"); err != nil {
				return err
			}
			_, statErr := os.Stat(newPath)
			if statErr == nil {
				if err := secret.CheckMode(newPath); err != nil {
					return fmt.Errorf("the new key: %w", err)
				}
			}
			newKey, err := store.LoadKey(newPath, errors.Is(statErr, fs.ErrNotExist))
			if err != nil {
				return fmt.Errorf("the new key: %w", err)
			}
			db, err := store.OpenWithKeyFile(cfg.Daemon.DB, keyFile, store.Options{NewKey: newKey})
			if err != nil {
				return offline(err, "rekey")
			}
			before, err := db.KeyInfo()
			if err != nil {
				db.Close()
				return err
			}
			start := time.Now()
			line := a.statusLine()
			err = db.Rekey(newKey, func(done, total int) {
				line.update("rekeying: %d of %d tokens", done, total)
			})
			line.end()
			if cerr := db.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("%w\n(the new key is in %s: run grantwatch db rekey again with it to finish)", err, newPath)
			}
			newFP := store.KeyFingerprint(newKey)
			kept, err := installKey(keyFile, newPath, before.Fingerprint)
			if err != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "the database is sealed with the new key %s, but %s could not be replaced: %v\n", newFP, keyFile, err)
				fmt.Fprintf(cmd.OutOrStdout(), "copy %s to %s (mode 0600) before starting grantwatch: it no longer opens with the old key\n", newPath, keyFile)
				return exitCode(1)
			}
			if newKeyFile == "" {
				os.Remove(newPath)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rekeyed %s in %s: sealed with %s, was %s\n", cfg.Daemon.DB, time.Since(start).Round(time.Millisecond), newFP, before.Fingerprint)
			fmt.Fprintf(cmd.OutOrStdout(), "%s holds the new key; the old one is kept as %s (backups made before now need it)\n", keyFile, kept)
			return nil
		},
	}
	cmd.Flags().StringVar(&newKeyFile, "new-key", "", "the new key's file, created (random, mode 0600) when missing (default: secrets.key_file + .new)")
	return cmd
}

// refuseRunningDaemon fails when a daemon answers on the control socket:
// what would rewrite the database must not run under it.
func (a *app) refuseRunningDaemon(ctx context.Context, cfg *config.Config, what string) error {
	c, err := api.DialSocket(ctx, cfg.Daemon.Socket, time.Minute)
	if err != nil {
		return nil
	}
	c.Close()
	return fmt.Errorf("the daemon is running (it answers on %s): db %s works with it stopped: stop it (systemctl stop grantwatch), run db %s, then start it", cfg.Daemon.Socket, what, what)
}

// offline explains ErrInUse for a command that needs the daemon stopped.
func offline(err error, what string) error {
	if errors.Is(err, store.ErrInUse) {
		return fmt.Errorf("%w\n(db %s works with the daemon stopped: stop it, run db %s, then start it)", err, what, what)
	}
	return err
}

// checkFile opens the database at path with the key in keyFile and checks
// it whole.
func checkFile(ctx context.Context, path, keyFile string) error {
	db, err := store.OpenWithKeyFile(path, keyFile, store.Options{})
	if err != nil {
		return err
	}
	err = db.Check(ctx)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}

// swapIn replaces db with its compacted copy tmp, keeping db as bak. It
// holds db's lock while it does (as bbolt takes it: flock), and refuses when
// db changed since before, when its size and time were read: a grantwatch
// that opened it meanwhile. The copy gets db's owner, so that a daemon
// running as another user than this command can open it.
func swapIn(db, tmp, bak string, before fs.FileInfo) error {
	f, err := os.OpenFile(db, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("a grantwatch opened %s while it was compacted: stop it and run db compact again", db)
	}
	now, err := f.Stat()
	if err != nil {
		return err
	}
	if now.Size() != before.Size() || !now.ModTime().Equal(before.ModTime()) {
		return fmt.Errorf("%s changed while it was compacted (a grantwatch wrote to it): stop it and run db compact again", db)
	}
	if err := chownLike(tmp, before); err != nil {
		return err
	}
	// Linked, not renamed: db exists at every moment, so that a daemon
	// starting now finds a database, not none.
	if err := os.Link(db, bak); err != nil {
		return fmt.Errorf("keep the original as %s: %w", bak, err)
	}
	if err := os.Rename(tmp, db); err != nil {
		os.Remove(bak)
		return fmt.Errorf("swap in the compacted copy: %w", err)
	}
	return atomicfile.SyncDir(filepath.Dir(db))
}

// installKey makes keyFile hold the key in newPath, keeping the old key
// beside it as keyFile.old-<fingerprint> (oldFP is its fingerprint), and
// returns that name. The new key file gets the old one's owner.
func installKey(keyFile, newPath, oldFP string) (string, error) {
	kept := keyFile + ".old-" + strings.TrimPrefix(oldFP, "sha256:")
	if _, err := os.Lstat(kept); errors.Is(err, fs.ErrNotExist) {
		if err := os.Link(keyFile, kept); err != nil {
			return "", fmt.Errorf("keep the old key as %s: %w", kept, err)
		}
	}
	b, err := os.ReadFile(newPath)
	if err != nil {
		return "", err
	}
	old, err := os.Stat(keyFile)
	if err != nil {
		return "", err
	}
	err = atomicfile.Write(keyFile, func(f *os.File) error {
		if err := chownLike(f.Name(), old); err != nil {
			return err
		}
		_, err := f.Write(b)
		return err
	})
	return kept, err
}

// chownLike gives path the owner of like, when this process may: a file
// that replaces another keeps it for the daemon's user. Without the right
// (not root), the file stays this user's.
func chownLike(path string, like fs.FileInfo) error {
	st, ok := like.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if err := os.Chown(path, int(st.Uid), int(st.Gid)); err != nil && !errors.Is(err, fs.ErrPermission) {
		return err
	}
	return nil
}

// sameFile reports whether a and b name one file (both exist and are the
// same inode, or their absolute paths are equal).
func sameFile(a, b string) bool {
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	if errA == nil && errB == nil {
		return os.SameFile(fa, fb)
	}
	absA, err1 := filepath.Abs(a)
	absB, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && absA == absB
}

// progressCounter counts what is written through it and shows the count
// at most every 200 ms, from 200 ms on.
type progressCounter struct {
	w    io.Writer
	n    int64
	last time.Time
	show func(n int64)
}

func (p *progressCounter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.n += int64(n)
	if time.Since(p.last) >= 200*time.Millisecond {
		if !p.last.IsZero() {
			p.show(p.n)
		}
		p.last = time.Now()
	}
	return n, err
}

// fileSize is path's size for a person, or "" when unknown.
func fileSize(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return "size unknown"
	}
	return humanBytes(fi.Size())
}

// humanBytes renders a size: 512 B, 3.4 MB, 1.2 GB (powers of 1000).
func humanBytes(n int64) string {
	switch {
	case n < 1000:
		return fmt.Sprintf("%d B", n)
	case n < 1000_000:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	case n < 1000_000_000:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.2f GB", float64(n)/1e9)
}
