//! A LAN of our own: N hosts, each a network namespace, joined by a bridge, for what only a real network shows
//! (discovery by multicast, cut links, lost packets, an address that changes, IPv6).
//!
//! Layout of one [`Lan`]: a hub namespace holding the bridge `br0` and one veth end `p<i>` per host; host `i`'s
//! namespace holds the other end, `eth0`, with `10.77.0.<10+i>/24`, `fd77::<10+i>/64` and the link-local
//! `fe80::77:<10+i>/64` (all `nodad`: usable at once). Nothing touches the root namespace, so the addresses are the
//! same in every LAN and two LANs (tests run two at a time) cannot meet; the namespace names carry the test
//! process's id and a per-process counter, so they never clash either. Everything is removed on drop (also when
//! the test panics); namespaces left by a killed test process are swept by the next `Lan::new`.
//!
//! Needs root, iproute2 (`ip`) and nftables (`nft`, for [`Host::loss`]). Under `CI=true` a missing tool fails the
//! test; elsewhere [`Lan::new`] says what is missing and returns `None` (the test then skips).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::process::{Child, Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::process::{Proc, hchat, spawn_in};

/// Prefix of every namespace a LAN makes: `hcl<pid>-<lan>-hub` and `hcl<pid>-<lan>-<host>`.
const PREFIX: &str = "hcl";

/// Which LAN of this test process: tests run two at a time in one process.
static NEXT_LAN: AtomicUsize = AtomicUsize::new(0);

/// A bridge and its hosts, removed on drop.
pub(crate) struct Lan {
    hub: String,
    hosts: Vec<Host>,
}

/// One host of a [`Lan`]: a network namespace with one interface, `eth0`, on the bridge.
pub(crate) struct Host {
    /// The namespace's name (for `ip netns exec`).
    pub ns: String,
    index: usize,
    ip: Mutex<Ipv4Addr>,
}

/// Runs `ip ARGS`, or says what failed.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` (apt-get install iproute2): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`ip {}` failed (needs root): {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// The address of host `i` at creation.
fn host_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, 10 + i as u8)
}

/// Whether `tool` runs at all (`--version`).
fn tool_runs(tool: &str, arg: &str) -> bool {
    Command::new(tool)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Removes the namespaces of earlier test processes that were killed before their LANs were dropped.
fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

impl Lan {
    /// A LAN of `n` hosts (at most 200). `None` (after saying why) when this machine cannot make one; under
    /// `CI=true` that fails the test instead.
    pub(crate) fn new(n: usize) -> Option<Lan> {
        assert!((1..=200).contains(&n), "a LAN of 1 to 200 hosts");
        let made = if !tool_runs("ip", "-V") {
            Err("`ip` is missing (apt-get install iproute2)".to_string())
        } else if !tool_runs("nft", "--version") {
            Err("`nft` is missing (apt-get install nftables)".to_string())
        } else {
            Lan::make(n)
        };
        match made {
            Ok(lan) => Some(lan),
            Err(why) => {
                let ci = std::env::var("CI").is_ok_and(|v| v == "true");
                assert!(!ci, "cannot make a namespaced LAN: {why}");
                eprintln!("SKIPPED: cannot make a namespaced LAN ({why}); needs root, ip and nft");
                None
            }
        }
    }

    fn make(n: usize) -> Result<Lan, String> {
        sweep_stale();
        let id = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT_LAN.fetch_add(1, Ordering::Relaxed)
        );
        let hub = format!("{id}-hub");
        ip(&["netns", "add", &hub])?;
        // From here on, a failure drops `lan`, which removes what was made.
        let mut lan = Lan {
            hub: hub.clone(),
            hosts: Vec::new(),
        };
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        // Without a multicast querier on the LAN, snooping could stop forwarding mDNS once its timers run out.
        ip(&[
            "-n",
            &hub,
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let ns = format!("{id}-{i}");
            ip(&["netns", "add", &ns])?;
            lan.hosts.push(Host {
                ns: ns.clone(),
                index: i,
                ip: Mutex::new(host_ip(i)),
            });
            let port = format!("p{i}");
            ip(&[
                "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &hub, "link", "set", &port, "master", "br0", "up"])?;
            let h = &lan.hosts[i];
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            // Our own link-local address instead of one from the MAC: known in advance, and without DAD.
            ip(&["-n", &ns, "link", "set", "eth0", "addrgenmode", "none"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", h.ip()),
                "dev",
                "eth0",
            ])?;
            for v6 in [h.ip6(), h.link_local()] {
                ip(&[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{v6}/64"),
                    "dev",
                    "eth0",
                    "nodad",
                ])?;
            }
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        }
        Ok(lan)
    }

    /// Host `i` (from 0).
    pub(crate) fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// Cuts hosts `a` and `b` from each other both ways: each drops what it sends to the other's addresses (IPv4,
    /// IPv6 and link-local; an nftables table `hchat_cut_<other>`, since a blackhole route does not stop a
    /// link-local packet sent with its scope). Both still reach every other host, and multicast still flows. The
    /// rules are on the addresses of the moment: a host that changes its address afterwards is reachable again.
    pub(crate) fn cut(&self, a: usize, b: usize) {
        for (from, to) in [(a, b), (b, a)] {
            let other = &self.hosts[to];
            let rules = format!(
                "table inet hchat_cut_{to} {{
  chain outbound {{ type filter hook output priority 0; ip daddr {} drop; ip6 daddr {{ {}, {} }} drop; }}
}}",
                other.ip(),
                other.ip6(),
                other.link_local()
            );
            self.hosts[from].nft(&rules);
        }
    }

    /// Lifts [`Lan::cut`].
    pub(crate) fn uncut(&self, a: usize, b: usize) {
        for (from, to) in [(a, b), (b, a)] {
            self.hosts[from].nft(&format!("delete table inet hchat_cut_{to}"));
        }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Deleting a host's namespace deletes its veth pair (and its nftables rules) with it.
        for h in &self.hosts {
            let _ = ip(&["netns", "del", &h.ns]);
        }
        let _ = ip(&["netns", "del", &self.hub]);
    }
}

impl Host {
    /// The host's IPv4 address (the current one, after [`Host::change_ip`]).
    pub(crate) fn ip(&self) -> Ipv4Addr {
        *self.ip.lock().unwrap()
    }

    /// The host's IPv6 ULA address, `fd77::<10+i>`.
    pub(crate) fn ip6(&self) -> Ipv6Addr {
        Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 10 + self.index as u16)
    }

    /// The host's IPv6 link-local address, `fe80::77:<10+i>` (reached with the scope of the sender's `eth0`).
    pub(crate) fn link_local(&self) -> Ipv6Addr {
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0x77, 10 + self.index as u16)
    }

    /// The index of `eth0` in this host: the scope id of a link-local address reached from here.
    pub(crate) fn scope_id(&self) -> u32 {
        let out = self.output(Command::new("cat").arg("/sys/class/net/eth0/ifindex"));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("an interface index")
    }

    /// `addr` (another host's link-local address) with this host's scope.
    pub(crate) fn scoped(&self, addr: Ipv6Addr, port: u16) -> SocketAddr {
        SocketAddr::V6(SocketAddrV6::new(addr, port, 0, self.scope_id()))
    }

    /// Loads nftables `rules` in this host, or panics saying why.
    fn nft(&self, rules: &str) {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), rules).unwrap();
        let out = self.output(Command::new("nft").arg("-f").arg(file.path()));
        assert!(
            out.status.success(),
            "nft in {}: {}\n{rules}",
            self.ns,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `cmd` (its program, arguments, environment and folder) run inside this host, through `ip netns exec`; the
    /// returned command is what to spawn. `ip netns exec` execs the program, so the child's pid is the program's.
    pub(crate) fn command(&self, cmd: &Command) -> Command {
        let mut inside = Command::new("ip");
        inside
            .args(["netns", "exec", &self.ns])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => inside.env(k, v),
                None => inside.env_remove(k),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            inside.current_dir(dir);
        }
        inside
    }

    /// Spawns `cmd` inside this host, its stdout and stderr on pipes.
    pub(crate) fn spawn(&self, cmd: &Command) -> Child {
        self.command(cmd)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{:?} starts in {}: {e}", cmd.get_program(), self.ns))
    }

    /// Runs `cmd` inside this host to the end.
    pub(crate) fn output(&self, cmd: &mut Command) -> Output {
        self.command(cmd)
            .output()
            .unwrap_or_else(|e| panic!("{:?} runs in {}: {e}", cmd.get_program(), self.ns))
    }

    /// `hchat tracker --ip <this host> --port 0` with `extra`, running in this host.
    pub(crate) fn tracker(&self, extra: &[&str]) -> Proc {
        let mut cmd = hchat();
        cmd.args(["tracker", "--port", "0"]).args(extra);
        if !extra.contains(&"--ip") {
            cmd.args(["--ip", &self.ip().to_string()]);
        }
        spawn_in(self, "tracker", cmd, extra)
    }

    /// `hchat peer --name NAME --ip <this host> --port 0` with `extra`, running in this host; registered with
    /// `tracker` when it is given, else with no tracker address at all (the peer looks for one).
    pub(crate) fn peer(&self, name: &str, tracker: Option<SocketAddr>, extra: &[&str]) -> Proc {
        let mut cmd = hchat();
        cmd.args(["peer", "--name", name, "--port", "0"]);
        if let Some(t) = tracker {
            cmd.args([
                "--tracker-ip",
                &t.ip().to_string(),
                "--tracker-port",
                &t.port().to_string(),
            ]);
        }
        cmd.args(extra);
        if !extra.contains(&"--ip") {
            cmd.args(["--ip", &self.ip().to_string()]);
        }
        spawn_in(self, name, cmd, extra)
    }

    /// Runs `f` on a thread inside this host's namespace: a socket made there lives in the host's network (and
    /// stays there when handed back to another thread).
    pub(crate) fn within<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let ns = std::fs::File::open(format!("/run/netns/{}", self.ns))
            .unwrap_or_else(|e| panic!("namespace {} is there: {e}", self.ns));
        std::thread::spawn(move || {
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&ns),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .expect("setns into the host's network namespace (needs root)");
            f()
        })
        .join()
        .expect("the thread in the host's namespace did not panic")
    }

    /// A UDP socket bound inside this host (port 0: any).
    pub(crate) fn udp(&self, at: IpAddr) -> std::net::UdpSocket {
        self.within(move || std::net::UdpSocket::bind(SocketAddr::new(at, 0)).expect("UDP bind"))
    }

    /// Drops `percent` % of the packets entering and of those leaving this host's `eth0`, at random (nftables
    /// `numgen random mod 100 < N drop`; this kernel has no `tc netem`). `loss(0)` ends it.
    pub(crate) fn loss(&self, percent: u32) {
        assert!(percent <= 100);
        // Deleting a table that is not there fails; that is fine.
        let _ = self.output(Command::new("nft").args(["delete", "table", "inet", "hchat_loss"]));
        if percent == 0 {
            return;
        }
        let rules = format!(
            "table inet hchat_loss {{
  chain inbound {{ type filter hook input priority 0; iifname \"eth0\" numgen random mod 100 < {percent} drop; }}
  chain outbound {{ type filter hook output priority 0; oifname \"eth0\" numgen random mod 100 < {percent} drop; }}
}}"
        );
        self.nft(&rules);
    }

    /// Moves this host to another IPv4 address on the LAN (`10.77.0.X`; DHCP giving a new lease, a laptop moving):
    /// the old one is removed, then the new one added; sockets bound to the old address stop working. (Removed
    /// first because removing a primary address also removes the secondaries of its subnet.)
    pub(crate) fn change_ip(&self, new: Ipv4Addr) {
        let old = self.ip();
        ip(&[
            "-n",
            &self.ns,
            "addr",
            "del",
            &format!("{old}/24"),
            "dev",
            "eth0",
        ])
        .unwrap_or_else(|e| panic!("removing {old} from {}: {e}", self.ns));
        ip(&[
            "-n",
            &self.ns,
            "addr",
            "add",
            &format!("{new}/24"),
            "dev",
            "eth0",
        ])
        .unwrap_or_else(|e| panic!("adding {new} to {}: {e}", self.ns));
        *self.ip.lock().unwrap() = new;
    }
}
