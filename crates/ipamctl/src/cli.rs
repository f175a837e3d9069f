//! The command line: every subcommand, its options, help and examples.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::duration::parse_duration;

#[derive(Parser, Debug)]
#[command(
    name = "ipamctl",
    version,
    about = "See, explain and repair host-local IPAM allocations",
    long_about = "See, explain and repair host-local IPAM allocations.\n\n\
        Works on any data directory in the reference host-local layout (also one written only by \
        the Go plugin). Every read takes the same flock as the plugin (waiting at most \
        --lock-timeout) and creates nothing; nothing is changed unless `release` or `gc` is \
        confirmed.",
    after_help = "Exit status:\n  0  fine\n  1  findings: problems, an exhausted range set (show, list), \
        leaks (leaks), inconsistencies (check), an address or container not reserved (release), \
        a planned removal skipped or declined (release, gc, cluster reclaim)\n  2  errors: usage, I/O, a lock held \
        longer than --lock-timeout, a refused gc, release or cluster reclaim, a valid list or live node list matching \
        nothing, an unreachable etcd, an etcd alarm (metrics)\n\n\
        Networks kept in etcd: leaks, gc, release and check act for the configuration's \
        ipam.store.node (--node names another), as the plugin's GC does; `cluster` shows every node, \
        `cluster reclaim` removes a gone node's keys.\n\n\
        Examples:\n  ipamctl list --config /etc/cni/net.d\n  ipamctl show mynet --config /etc/cni/net.d --map\n  \
        ipamctl show mynet --pod kube-system/coredns-7db6d8ff4d-x2x9q\n  \
        ipamctl leaks mynet --valid attachments.txt\n  ipamctl gc mynet --valid attachments.txt --dry-run\n  \
        ipamctl check mynet --config /etc/cni/net.d\n  \
        ipamctl metrics --config /etc/cni/net.d --output /var/lib/node_exporter/ipam.prom"
)]
pub struct Cli {
    /// The host-local data directory for networks whose configuration names no dataDir (default:
    /// /var/lib/cni/networks). A configuration's own dataDir wins; a disagreement is reported.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Wait at most this long for a network's lock (e.g. 500ms, 5s, 1m), then fail with exit 2
    /// naming the lock file and its holder.
    #[arg(long, global = true, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub lock_timeout: Duration,
    /// libcni's result cache directory (files <network>-<containerID>-<ifname>; default
    /// /var/lib/cni/results when it exists): names the pods, and is what leaks falls back to
    /// and check compares with.
    #[arg(long, global = true, value_name = "DIR")]
    pub results_dir: Option<PathBuf>,
    /// Full container IDs (on a terminal they are shortened to 12 characters).
    #[arg(long, global = true)]
    pub no_trunc: bool,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Args, Debug, Clone, Default)]
pub struct ConfigArg {
    /// A network configuration (.conf, .conflist) or a directory of them (like /etc/cni/net.d);
    /// host-local ipam sections are matched to stores by network name, and each network is read
    /// from its own configuration's dataDir.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Every network: reservation counts, and with --config capacity, free addresses, usage and
    /// exhaustion per range set.
    #[command(
        after_help = "Exit status 1 when a range set is exhausted (no free address: every ADD \
        fails), 2 when a network could not be read or a configuration file could not be used \
        (shown as `config error`).\n\n\
        Examples:\n  ipamctl list\n  ipamctl list --config /etc/cni/net.d\n  \
        ipamctl --data-dir /srv/cni/networks list --json | jq '.networks[].name'"
    )]
    List(crate::cmd::list::Args),
    /// Every reservation of a network: address, container, pod, ifname, age and problems.
    #[command(
        after_help = "Problems: damaged (empty or unparseable file), and with --config: \
        outside-ranges, excluded, gateway, duplicate (one attachment holding several addresses of \
        a range set). Pods are named from libcni's result cache only (K8S_POD_NAMESPACE/K8S_POD_NAME). \
        Without NETWORK, --ip searches every network. A lookup that finds nothing says why. \
        Exit status 1 when a listed reservation has a problem, a range set is exhausted, or \
        --pod/--ip found nothing.\n\n\
        Examples:\n  ipamctl show mynet\n  ipamctl show mynet --config /etc/cni/net.d/10-mynet.conflist --map\n  \
        ipamctl show mynet --pod default/web-0\n  ipamctl show mynet --ip 10.22.0.17\n  \
        ipamctl show --ip 10.22.0.17 --config /etc/cni/net.d    # every network\n  \
        ipamctl show mynet --problems --older-than 1d\n  \
        ipamctl show mynet --json | jq '.reservations[] | select(.problems != [])'"
    )]
    Show(crate::cmd::show::Args),
    /// Reservations whose attachment the runtime no longer knows.
    #[command(
        after_help = "Sources: --valid lists the attachments the runtime still has \
        (authoritative). Without it, libcni's result cache (--results-dir) is used as a heuristic: \
        a reservation without a cached result is only suspected, because not every runtime keeps \
        that cache. Damaged files are always reported: they name no attachment. Leaks younger than \
        --min-age or made after the list are marked: gc (with the same --min-age) keeps them for \
        now. A list that keeps none of the network's reservations is refused, as by gc \
        (--force).\n\
        Exit status 1 when anything is found.\n\n\
        --valid formats: lines holding a container ID alone (keeps every interface of that \
        container: recommended) or `containerID ifname`; a JSON list [{\"containerID\",\"ifname\"}]; \
        or a whole GC network configuration carrying cni.dev/valid-attachments.\n\n\
        --cri URL: the runtime's pod sandboxes over CRI (ListPodSandbox), ready or not, as the \
        valid list.\n\n\
        Examples:\n  ipamctl leaks mynet --cri unix:///run/containerd/containerd.sock\n  \
        crictl pods -q --no-trunc > valid.txt     # full IDs, one per line\n  \
        ipamctl leaks mynet --valid valid.txt\n  ipamctl leaks mynet            # heuristic: /var/lib/cni/results\n  \
        ipamctl leaks mynet --valid - --json < valid.json"
    )]
    Leaks(crate::cmd::leaks::Args),
    /// Releases the reservations of one attachment or address.
    #[command(
        group(clap::ArgGroup::new("what").required(true).args(["container", "ip"])),
        after_help = "Removal goes through the plugin's own store code under its lock, and only \
        if the file still names the same owner as when listed. Without --yes a terminal is asked \
        y/N; without a terminal nothing changes. --container takes a full ID or a unique prefix \
        of at least 8 characters (as podman and crictl print them). A reservation whose container \
        looks alive (kept by --valid, or without it recorded in libcni's result cache) is refused \
        unless --force. Exit status 1 when nothing is reserved for the address or container, 2 \
        when refused.\n\n\
        Examples:\n  ipamctl release mynet --container 3f2a9c41 --dry-run\n  \
        ipamctl release mynet --container 3f2a9c41 --ifname eth1 --yes\n  ipamctl release mynet --ip 10.22.0.17"
    )]
    Release(crate::cmd::release::Args),
    /// Removes every reservation whose attachment is not valid (and every damaged file).
    #[command(
        after_help = "The plugin's CNI GC rules: an attachment must be listed (an ID-only line \
        keeps every interface of its container); a legacy ID-only file stays when its container \
        is listed; damaged files always go.\n\n\
        Guards (each overridden by --force): a list that keeps none of the network's \
        reservations (IDs from another runtime, or truncated) is refused; a GC configuration for \
        another network (its \"name\") is refused; removing every reservation is refused. \
        Reservations younger than --min-age, or made after the list file was written (less \
        --min-age), are never removed: their container may have started after the list was made.\n\n\
        --from-report applies a reviewed `leaks --json` report exactly: only its leaks, each only \
        while its file names the reported owner and was not made again; the others are listed \
        as skipped (exit 1). A report made without --valid needs --force.\n\n\
        Examples:\n  ipamctl gc mynet --cri unix:///run/containerd/containerd.sock --dry-run\n  \
        ipamctl gc mynet --valid valid.txt --dry-run\n  ipamctl gc mynet --valid valid.txt --yes\n  \
        ipamctl gc mynet --valid gc-config.json --json --yes\n  \
        ipamctl leaks mynet --valid valid.txt --json > report.json   # review it, then:\n  \
        ipamctl gc mynet --from-report report.json --yes"
    )]
    Gc(crate::cmd::gc::Args),
    /// The reverse of leaks: attachments the runtime cached whose reservation is missing or
    /// held by another container, and addresses reserved outside the configured ranges.
    #[command(
        after_help = "A cached attachment (libcni's result cache) whose address has no \
        reservation file, or whose file names another container, means the address can be (or \
        was) handed out twice. With --valid, cache entries of containers not in the list are \
        skipped as stale (gc leaves libcni's cache behind). Exit status 1 on any finding.\n\n\
        Examples:\n  ipamctl check mynet --config /etc/cni/net.d\n  \
        ipamctl check mynet --cri unix:///run/containerd/containerd.sock\n  \
        ipamctl check mynet --results-dir /var/lib/cni/results --json\n  \
        crictl pods -q --no-trunc | ipamctl check mynet --valid -"
    )]
    Check(crate::cmd::check::Args),
    /// Prometheus metrics: reservations, capacity, free, usage and exhaustion per range set,
    /// problems per kind, the oldest reservation's age.
    #[command(
        after_help = "Examples:\n  ipamctl metrics --config /etc/cni/net.d\n  \
        ipamctl metrics --config /etc/cni/net.d --output /var/lib/node_exporter/textfile/ipam.prom\n\n\
        With --output the file is replaced atomically (temporary file in the same directory, then \
        rename). Exit status 2 if a network could not be read (its ipamctl_network_up is 0) or a \
        configuration file could not be used (ipamctl_config_error)."
    )]
    Metrics(crate::cmd::metrics::Args),
    /// Releases leaks once they have stayed leaked for a grace period (for a systemd timer).
    #[command(
        after_help = "Each run compares every reservation with the valid list (as gc does, with \
        its guards and its --min-age), records in --state when each leak was first seen, \
        releases the leaks first seen at least --grace ago (only while their file still names \
        the same owner), and keeps the others. A container that was only briefly missing from \
        the list is never released. --dry-run changes nothing, not even the state file. Exit \
        status 2 when a network could not be reconciled (the others still are).\n\n\
        Examples:\n  \
        ipamctl reconcile --config /etc/cni/net.d --cri unix:///run/containerd/containerd.sock --grace 1h \\\n      \
        --state /var/lib/ipamctl/reconcile.json --yes\n  \
        ipamctl reconcile mynet --valid valid.txt --grace 30m --state st.json --dry-run"
    )]
    Reconcile(crate::cmd::reconcile::Args),
    /// Reservations per node of a network kept in etcd (cluster mode), nodes that hold
    /// reservations but are not in --live-nodes; `cluster reclaim`: a gone node's keys removed.
    #[command(after_help = crate::cluster::AFTER_HELP)]
    Cluster(crate::cluster::Args),
    /// Prints a shell completion script.
    #[command(
        after_help = "Examples:\n  ipamctl completions bash > /etc/bash_completion.d/ipamctl\n  \
        ipamctl completions zsh > \"${fpath[1]}/_ipamctl\""
    )]
    Completions(crate::cmd::completions::Args),
    /// Prints the man page ipamctl(1) (roff).
    #[command(after_help = "Example:\n  ipamctl man | man -l -")]
    Man,
    /// Prints SCHEMA.md: the --json output of every command, documented.
    #[command(after_help = "Example:\n  ipamctl schema | less")]
    Schema,
}

#[derive(Args, Debug)]
pub struct ValidArg {
    /// Valid attachments: a file, or - for stdin.
    #[arg(long, value_name = "FILE", conflicts_with = "cri")]
    pub valid: Option<String>,
    /// The runtime's pod sandboxes as the valid attachments, listed over CRI (ListPodSandbox;
    /// ready and not-ready sandboxes are live): unix:///run/containerd/containerd.sock,
    /// unix:///var/run/crio/crio.sock.
    #[arg(long, value_name = "URL")]
    pub cri: Option<String>,
    /// Wait at most this long for each CRI call.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub cri_timeout: Duration,
}

impl ValidArg {
    /// The valid attachments `--valid` or `--cri` gives, if either was.
    pub fn load(&self) -> anyhow::Result<Option<crate::attach::ValidSet>> {
        match (&self.valid, &self.cri) {
            (Some(v), _) => crate::attach::load_valid(v).map(Some),
            (None, Some(url)) => crate::attach::load_cri(url, self.cri_timeout).map(Some),
            (None, None) => Ok(None),
        }
    }
}

#[derive(Args, Debug)]
pub struct ChangeArgs {
    /// Show what would be removed and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do it without asking (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// JSON output (schema in SCHEMA.md).
    #[arg(long)]
    pub json: bool,
}

/// The text of a FILE argument, `-` meaning stdin; errors name `what` and where it was read.
pub fn read_file_arg(src: &str, what: &str) -> anyhow::Result<String> {
    use anyhow::Context;
    use std::io::Read;
    if src == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .with_context(|| format!("reading {what} from stdin"))?;
        Ok(s)
    } else {
        std::fs::read_to_string(src).with_context(|| format!("{what} {src}"))
    }
}
