package schema

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// CheckPaths checks every value that names a file (Attribute.Path) the way
// the plugin will use it, without creating or opening anything, and returns
// one FieldError per value that cannot work.
func (s Schema) CheckPaths(v Values) Errors {
	var errs Errors
	for _, a := range s {
		p := v.String(a.Name)
		if a.Path == NotAPath || p == "" {
			continue
		}
		if err := checkPath(a.Path, p); err != nil {
			errs = append(errs, &FieldError{Field: a.Name, Msg: err.Error()})
		}
	}
	return errs
}

func checkPath(kind PathKind, p string) error {
	st, err := os.Lstat(p)
	switch {
	case err == nil && st.IsDir():
		return fmt.Errorf("%s is a directory; want a file", p)
	case err == nil && st.Mode()&fs.ModeSymlink != 0 && kind == WrittenFile:
		return fmt.Errorf("%s is a symbolic link; a written file must not be one", p)
	case err == nil && kind == ReadFile:
		if st, err = os.Stat(p); err != nil || !st.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", p)
		}
		return nil
	case err == nil && !st.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file (%s)", p, st.Mode().Type())
	case err == nil:
		return checkDir(filepath.Dir(p))
	case !errors.Is(err, fs.ErrNotExist):
		return err
	case kind == ReadFile:
		return fmt.Errorf("%s does not exist", p)
	}
	// A file to be created: the nearest existing ancestor must be a
	// directory.
	for dir := filepath.Dir(p); ; dir = filepath.Dir(dir) {
		st, err := os.Stat(dir)
		if err == nil {
			if !st.IsDir() {
				return fmt.Errorf("%s cannot be created: %s is not a directory", p, dir)
			}
			if dir == filepath.Dir(p) {
				return checkDir(dir)
			}
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s cannot be created: %w", p, err)
		}
		if dir == filepath.Dir(dir) {
			return fmt.Errorf("%s cannot be created", p)
		}
	}
}

// checkDir refuses a directory others could swap a written file in.
func checkDir(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if st.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("directory %s is writable by group or others (mode %04o): a file in it could be swapped; run chmod go-w on it", dir, st.Mode().Perm())
	}
	return nil
}
