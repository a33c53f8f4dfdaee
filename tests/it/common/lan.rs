//! A second host on a LAN of our own (a network namespace), for what differs between loopback and a real LAN.

use std::process::Command;

/// A second host on a LAN of our own: a network namespace joined to this one by a veth pair, so a test can call a
/// node from a non-loopback address without sending a packet anywhere but this machine. Needs root and
/// iproute2 (`ip`) and curl; removed again on drop.
pub(crate) struct LanHost {
    ns: String,
    /// The address the nodes of the test (in this namespace) are reached at from the LAN host.
    pub node_ip: std::net::Ipv4Addr,
    /// The LAN host's own address: the source of its requests.
    pub own_ip: std::net::Ipv4Addr,
}

impl LanHost {
    /// Creates the namespace, or says why it cannot.
    pub(crate) fn create() -> Result<LanHost, String> {
        let id = std::process::id();
        let ns = format!("hchat-lan-{id}");
        let (a, b) = (((id >> 8) % 250) as u8 + 1, (id % 64) as u8 * 4);
        let node_ip = std::net::Ipv4Addr::new(10, 213, a, b + 1);
        let own_ip = std::net::Ipv4Addr::new(10, 213, a, b + 2);
        let host_if = format!("hl{id}");
        let lan = LanHost {
            ns,
            node_ip,
            own_ip,
        };
        let steps: Vec<Vec<String>> = vec![
            vec!["netns".into(), "add".into(), lan.ns.clone()],
            vec![
                "link".into(),
                "add".into(),
                host_if.clone(),
                "type".into(),
                "veth".into(),
                "peer".into(),
                "name".into(),
                "eth0".into(),
                "netns".into(),
                lan.ns.clone(),
            ],
            vec![
                "addr".into(),
                "add".into(),
                format!("{node_ip}/30"),
                "dev".into(),
                host_if.clone(),
            ],
            vec!["link".into(), "set".into(), host_if.clone(), "up".into()],
            vec![
                "-n".into(),
                lan.ns.clone(),
                "addr".into(),
                "add".into(),
                format!("{own_ip}/30"),
                "dev".into(),
                "eth0".into(),
            ],
            vec![
                "-n".into(),
                lan.ns.clone(),
                "link".into(),
                "set".into(),
                "eth0".into(),
                "up".into(),
            ],
            vec![
                "-n".into(),
                lan.ns.clone(),
                "link".into(),
                "set".into(),
                "lo".into(),
                "up".into(),
            ],
        ];
        for args in steps {
            let out = Command::new("ip")
                .args(&args)
                .output()
                .map_err(|e| format!("cannot run `ip` (apt-get install iproute2): {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "`ip {}` failed (needs root): {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        Ok(lan)
    }

    /// One HTTP request from the LAN host, with curl inside the namespace: the status and the body (for an
    /// event stream, which never ends, the status alone).
    pub(crate) fn request(
        &self,
        method: &str,
        url: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (u16, String) {
        let body_file = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &self.ns,
            "curl",
            "-s",
            "--noproxy",
            "*",
            "-m",
            "3",
            "-X",
            method,
        ]);
        cmd.args([
            "-o",
            body_file.path().to_str().unwrap(),
            "-w",
            "%{http_code}",
        ]);
        for (k, v) in headers {
            cmd.args(["-H", &format!("{k}: {v}")]);
        }
        if let Some(b) = body {
            cmd.args(["--data-binary", b]);
        }
        cmd.arg(url);
        let out = cmd
            .output()
            .expect("curl runs in the LAN namespace (apt-get install curl)");
        let status: u16 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| {
                panic!(
                    "no HTTP status from curl for {method} {url}: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        (
            status,
            std::fs::read_to_string(body_file.path()).unwrap_or_default(),
        )
    }
}

impl Drop for LanHost {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the veth pair, and with it ours.
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}
