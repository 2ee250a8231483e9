package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/server"
	"github.com/gantryhq/gantry/internal/vsphere"
	"github.com/gantryhq/gantry/internal/vsphere/vcsim"
	"github.com/spf13/cobra"
)

// vsphereDaemonFlags are the virtualization monitor's daemon flags.
type vsphereDaemonFlags struct {
	interval        time.Duration
	history         int
	historyInterval time.Duration
	biosUUIDFile    string
}

func (f *vsphereDaemonFlags) addServer(cmd *cobra.Command) {
	cmd.Flags().DurationVar(&f.interval, "vsphere-interval", vsphere.RealTimeInterval, "how often the leader samples every vSphere host and VM (the PerformanceManager's real-time interval is 20s)")
	cmd.Flags().IntVar(&f.history, "vsphere-history", vsphere.DefaultHistory, "samples kept per vSphere host, VM and datastore (180: one hour at 20s; about 40 bytes each, see the README)")
	cmd.Flags().DurationVar(&f.historyInterval, "vsphere-history-interval", 0, "keep at most one vSphere sample per entity per interval (0: every round)")
}

func (f *vsphereDaemonFlags) addAgent(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.biosUUIDFile, "bios-uuid-file", "", "read the BIOS UUID that matches this node to its vSphere VM from this file instead of /sys/class/dmi/id/product_uuid (for tests)")
	cmd.Flags().MarkHidden("bios-uuid-file")
}

func (f *vsphereDaemonFlags) serverConfig() server.VSphereConfig {
	return server.VSphereConfig{Interval: f.interval, History: f.history, HistoryInterval: f.historyInterval}
}

func newVSphereCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vsphere",
		Short: "Watch vCenters: hosts, VMs, datastores, their performance history, and which host each node runs on",
	}
	cmd.AddCommand(newVSphereAddCmd(g), newVSphereListCmd(g), newVSphereStatusCmd(g), newVSphereRemoveCmd(g), newVSphereSimulateCmd(g))
	return cmd
}

func newVSphereAddCmd(g *globals) *cobra.Command {
	var req api.VSphereConnectRequest
	var passwordFile, caFile string
	cmd := &cobra.Command{
		Use:   "add <name> --url https://vcenter/sdk --user <user> --password-file <file> [--vcenter-ca <pem> | --insecure]",
		Short: "Connect a vCenter (or ESXi host); the connection is tried before it is saved",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Name = args[0]
			if passwordFile == "" {
				return exitf(ExitError, "--password-file is required: the password is read from a file so that it stays out of the shell history")
			}
			pw, err := os.ReadFile(passwordFile)
			if err != nil {
				return exitf(ExitError, "read --password-file: %v", err)
			}
			req.Password = strings.TrimRight(string(pw), "\r\n")
			if caFile != "" {
				pem, err := os.ReadFile(caFile)
				if err != nil {
					return exitf(ExitError, "read --vcenter-ca: %v", err)
				}
				req.CACert = string(pem)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
			defer cancel()
			var out api.VSphereConnection
			if err := g.client().do(ctx, http.MethodPut, "/v1/vsphere/connections", &req, &out); err != nil {
				return exitf(ExitError, "connect vCenter %s: %v", req.Name, err)
			}
			fmt.Fprintf(g.out, "vCenter %q connected (%s as %s); the leader now collects its inventory and performance\n", out.Name, out.URL, out.User)
			return nil
		},
	}
	cmd.Flags().StringVar(&req.URL, "url", "", "SDK URL of the vCenter or ESXi host, e.g. https://vcenter.example.com/sdk")
	cmd.Flags().StringVar(&req.User, "user", "", "user to log in as (read-only access is enough)")
	cmd.Flags().StringVar(&passwordFile, "password-file", "", "file holding the password (stored in the cluster state, never shown again)")
	cmd.Flags().StringVar(&caFile, "vcenter-ca", "", "PEM file of the CA that signed the vCenter's certificate (the global --ca-cert is the Gantry cluster's CA)")
	cmd.Flags().BoolVar(&req.Insecure, "insecure", false, "do not verify the vCenter's certificate (only on a trusted network)")
	cmd.Flags().BoolVar(&req.DrainOnMaintenance, "drain-on-maintenance", false, "drain the Gantry nodes of a host that enters maintenance mode")
	return cmd
}

func newVSphereListCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the vCenter connections (never their passwords)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var conns []api.VSphereConnection
			if err := g.client().get("/v1/vsphere/connections", &conns); err != nil {
				return exitf(ExitError, "list vCenter connections: %v", err)
			}
			if g.json {
				return printJSON(g.out, conns)
			}
			if len(conns) == 0 {
				fmt.Fprintln(g.out, "No vCenter connections: add one with 'gantry vsphere add'")
				return nil
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tURL\tUSER\tTLS\tDRAIN ON MAINTENANCE")
			for _, c := range conns {
				tlsMode := "system CAs"
				switch {
				case c.Insecure:
					tlsMode = "not verified"
				case c.HasCACert:
					tlsMode = "own CA"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\n", c.Name, c.URL, c.User, tlsMode, c.DrainOnMaintenance)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&g.json, "json", false, "print as JSON")
	return cmd
}

func newVSphereRemoveCmd(g *globals) *cobra.Command {
	return deleteCmd(g, "remove <name>", "Remove a vCenter connection and its credentials; its nodes lose their vsphere attributes", "/v1/vsphere/connections/", "remove", "vCenter", "vCenter")
}

func newVSphereStatusCmd(g *globals) *cobra.Command {
	var vcenter string
	cmd := &cobra.Command{
		Use:   "status [host|vm|datastore]",
		Short: "Show each vCenter's connection and inventory, or one host's, VM's or datastore's history",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := g.client()
			if len(args) == 1 {
				path := "/v1/vsphere/history/" + url.PathEscape(args[0])
				if vcenter != "" {
					path += "?vcenter=" + url.QueryEscape(vcenter)
				}
				var h api.VSphereHistory
				if err := c.get(path, &h); err != nil {
					return exitf(ExitError, "vSphere status of %s: %v", args[0], err)
				}
				if g.json {
					return printJSON(g.out, h)
				}
				fmt.Fprintf(g.out, "%s %s (%s) in vCenter %s: %d samples\n", h.Kind, h.Name, h.ID, h.VCenter, len(h.Samples))
				tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
				if h.Kind == "datastore" {
					fmt.Fprintln(tw, "TIME\tUSED %")
					for _, s := range h.Samples {
						fmt.Fprintf(tw, "%s\t%.1f\n", s.Time.Local().Format("15:04:05"), s.DatastoreUsed)
					}
					return tw.Flush()
				}
				fmt.Fprintln(tw, "TIME\tCPU %\tREADY %\tMEM %\tBALLOON MiB\tSWAP MiB\tDISK ms\tNET KB/s")
				for _, s := range h.Samples {
					fmt.Fprintf(tw, "%s\t%.1f\t%.2f\t%.1f\t%.0f\t%.0f\t%.0f\t%.0f\n", s.Time.Local().Format("15:04:05"),
						s.CPUUsage, s.CPUReady, s.MemUsage, s.BalloonMiB, s.SwappedMiB, s.DiskLatencyMs, s.NetKBps)
				}
				return tw.Flush()
			}
			path := "/v1/vsphere/status"
			if g.json {
				path += "?full=true"
			}
			var sts []api.VSphereStatus
			if err := c.get(path, &sts); err != nil {
				return exitf(ExitError, "vSphere status: %v", err)
			}
			if vcenter != "" {
				var keep []api.VSphereStatus
				for _, s := range sts {
					if s.Connection.Name == vcenter {
						keep = append(keep, s)
					}
				}
				sts = keep
			}
			if g.json {
				return printJSON(g.out, sts)
			}
			if len(sts) == 0 {
				fmt.Fprintln(g.out, "No vCenter connections: add one with 'gantry vsphere add'")
				return nil
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSTATE\tSINCE\tDATACENTERS\tCLUSTERS\tHOSTS\tVMS\tDATASTORES\tLAST ROUND")
			var own *api.VSphereStatus
			for _, s := range sts {
				if s.Connection.Name == vsphere.GantrySource {
					own = &s
					fmt.Fprintf(tw, "%s\town VMs\t-\t-\t-\t%d\t%d\t-\t-\n", s.Connection.Name, s.Counts.Hosts, s.Counts.VMs)
					continue
				}
				state := "connected"
				if !s.Connected {
					state = "disconnected"
				}
				round := "-"
				if !s.RoundTime.IsZero() {
					round = fmt.Sprintf("%s (%s)", s.RoundTime.Local().Format("15:04:05"), s.RoundDuration.D().Round(time.Millisecond))
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", s.Connection.Name, state, s.Since.Local().Format(time.DateTime),
					s.Counts.Datacenters, s.Counts.Clusters, s.Counts.Hosts, s.Counts.VMs, s.Counts.Datastores, round)
			}
			tw.Flush()
			for _, s := range sts {
				if !s.Connected && s.LastError != "" {
					fmt.Fprintf(g.out, "%s: %s (next try %s)\n", s.Connection.Name, s.LastError, s.Retry.Local().Format("15:04:05"))
				}
				for _, c := range s.Conflicts {
					fmt.Fprintf(g.out, "%s: %s\n", s.Connection.Name, c)
				}
			}
			if own != nil && own.Counts.VMs > 0 {
				if err := c.get("/v1/vsphere/status/"+vsphere.GantrySource, own); err != nil {
					return exitf(ExitError, "vSphere status of Gantry's own VMs: %v", err)
				}
				fmt.Fprintln(g.out, "\nGantry's own VMs (qemu tasks):")
				printGantryVMs(g.out, own.VMs)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&vcenter, "vcenter", "", "only this connection (\"gantry\": Gantry's own VMs)")
	cmd.Flags().BoolVar(&g.json, "json", false, "print as JSON (the whole inventory, with each entity's latest sample)")
	return cmd
}

// printGantryVMs lists Gantry's own VMs in vCenter's columns, with the
// allocation behind each; usage is "-" until the node has sampled it.
func printGantryVMs(out io.Writer, vms []api.VSphereVM) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tHOST\tPOWER\tVCPU\tMEMORY MiB\tCPU %\tMEM %\tJOB\tALLOC")
	for _, vm := range vms {
		cpu, mem := "-", "-"
		if vm.Latest != nil {
			cpu, mem = fmt.Sprintf("%.1f", vm.Latest.CPUUsage), fmt.Sprintf("%.1f", vm.Latest.MemUsage)
		}
		job, alloc := "-", "-"
		if vm.Gantry != nil {
			job, alloc = vm.Gantry.Namespace+"/"+vm.Gantry.Job, api.ShortID(vm.Gantry.Alloc)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", vm.Name, vm.Host, vm.PowerState, vm.VCPU, vm.MemoryMiB, cpu, mem, job, alloc)
	}
	tw.Flush()
}

func newVSphereSimulateCmd(g *globals) *cobra.Command {
	cfg := vcsim.Default()
	var caOut, pwOut string
	cmd := &cobra.Command{
		Use:   "simulate",
		Short: "Serve a simulated vCenter (govmomi's vcsim) to try the vsphere commands without one",
		Long: `Serve a simulated vCenter: govmomi's vcsim, the real vSphere SOAP API with an
inventory of the size asked for, until interrupted. It prints the URL and
writes its certificate and password to files for 'gantry vsphere add'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			sim, err := vcsim.Start(cfg)
			if err != nil {
				return exitf(ExitError, "%v", err)
			}
			defer sim.Close()
			if caOut != "" {
				if err := os.WriteFile(caOut, []byte(sim.CACert), 0o644); err != nil {
					return exitf(ExitError, "write --write-ca: %v", err)
				}
			}
			if pwOut != "" {
				if err := os.WriteFile(pwOut, []byte(cfg.Password+"\n"), 0o600); err != nil {
					return exitf(ExitError, "write --write-password: %v", err)
				}
			}
			count := sim.Model.Count()
			fmt.Fprintf(g.out, "Simulated vCenter at %s: %d datacenters, %d clusters, %d hosts, %d VMs, %d datastores\n",
				sim.URL, count.Datacenter, count.Cluster, count.Host, count.Machine, count.Datastore)
			fmt.Fprintf(g.out, "Connect it with: gantry vsphere add sim --url %s --user %s --password-file <file>", sim.URL, cfg.User)
			if caOut != "" {
				fmt.Fprintf(g.out, " --vcenter-ca %s", caOut)
			}
			fmt.Fprintln(g.out)
			ctx, stop := signalContext()
			defer stop()
			<-ctx.Done()
			return nil
		},
	}
	cmd.Flags().StringVar(&cfg.Addr, "listen", "127.0.0.1:8989", "address to serve the SDK on")
	cmd.Flags().StringVar(&cfg.User, "user", cfg.User, "the user it accepts")
	cmd.Flags().StringVar(&cfg.Password, "password", cfg.Password, "the password it accepts")
	cmd.Flags().IntVar(&cfg.Datacenters, "datacenters", cfg.Datacenters, "datacenters")
	cmd.Flags().IntVar(&cfg.Clusters, "clusters", cfg.Clusters, "clusters per datacenter")
	cmd.Flags().IntVar(&cfg.HostsPerCluster, "cluster-hosts", cfg.HostsPerCluster, "hosts per cluster")
	cmd.Flags().IntVar(&cfg.Standalone, "standalone-hosts", cfg.Standalone, "standalone hosts per datacenter")
	cmd.Flags().IntVar(&cfg.VMs, "vms", cfg.VMs, "VMs per cluster and per standalone host")
	cmd.Flags().IntVar(&cfg.Datastores, "datastores", cfg.Datastores, "datastores")
	cmd.Flags().StringVar(&caOut, "write-ca", "", "write the simulator's certificate (PEM) to this file")
	cmd.Flags().StringVar(&pwOut, "write-password", "", "write the password to this file (mode 0600)")
	return cmd
}
