package compose

import (
	"context"
	"fmt"
	"os"
	"strings"

	"go.yaml.in/yaml/v4"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// LoadOptions say which Compose files to read, as docker compose takes
// them: -f files (merged in order; none: compose.yaml and its
// alternatives in WorkingDir), -p project name, --profile, --env-file.
type LoadOptions struct {
	Files    []string
	Project  string
	Profiles []string
	EnvFiles []string
	// WorkingDir is where compose.yaml is looked for when Files is empty.
	WorkingDir string
	// ProjectDir is the project directory (--project-directory): where
	// .env is read and relative paths start. Empty: the first file's
	// directory, as docker compose takes it (WorkingDir without files).
	ProjectDir string
	// Env is the environment interpolation reads (os.Environ() in the CLI),
	// before the .env file.
	Env []string
}

// Load reads and merges the Compose files with compose-go, exactly as
// Docker Compose loads them: interpolation from the environment and the
// .env file, several files merged, profiles, extends. Errors are
// compose-go's own and keep their file and line.
func Load(ctx context.Context, o LoadOptions) (*types.Project, error) {
	dir := o.ProjectDir
	if dir == "" && len(o.Files) == 0 {
		dir = o.WorkingDir
	}
	fns := []cli.ProjectOptionsFn{
		cli.WithWorkingDirectory(dir),
		cli.WithEnv(o.Env),
		cli.WithEnvFiles(o.EnvFiles...),
		cli.WithDotEnv,
		cli.WithConfigFileEnv,
		cli.WithDefaultConfigPath,
		cli.WithProfiles(o.Profiles),
	}
	if o.Project != "" {
		fns = append(fns, cli.WithName(o.Project))
	}
	opts, err := cli.NewProjectOptions(o.Files, fns...)
	if err != nil {
		return nil, err
	}
	p, err := opts.LoadProject(ctx)
	if err != nil {
		return nil, locate(opts.ConfigPaths, err)
	}
	if len(p.Services) == 0 {
		return nil, fmt.Errorf("compose project %q has no service to deploy (with the profiles %v)", p.Name, o.Profiles)
	}
	return p, nil
}

// locate names the file of a YAML syntax error that compose-go reports
// without it (it does when it reads the project's name first): each file
// is parsed alone, and the first that fails names itself.
func locate(files []string, err error) error {
	for _, f := range files {
		if strings.Contains(err.Error(), f) {
			return err
		}
	}
	for _, f := range files {
		data, rerr := os.ReadFile(f)
		if rerr != nil {
			continue
		}
		var v any
		if yerr := yaml.Unmarshal(data, &v); yerr != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
	}
	return err
}
