//! nginx, the HTTP anchor: two workers (one per core of the machine this was written for) serving, byte for byte,
//! what our tracker answers: `GET /get-list` from a static file, and `POST /submit-info` with a fixed body. It is
//! driven by the same load generator as the tracker.

use std::path::Path;

use super::{ServerProc, free_port, temp_dir, write};
use crate::bench::{BenchError, Result};

/// What nginx serves: the body of each answer, copied from the tracker's.
pub(crate) struct Answers<'a> {
    pub get_list: &'a [u8],
    pub renew: &'a [u8],
}

/// Starts nginx on a free loopback port, serving `answers`.
pub(crate) async fn start(bin: &Path, answers: &Answers<'_>) -> Result<ServerProc> {
    let port = free_port()?;
    let dir = temp_dir("nginx")?;
    let d = dir.path();
    std::fs::create_dir_all(d.join("www")).map_err(BenchError::io("creating nginx's root"))?;
    write(&d.join("www"), "get-list.json", answers.get_list)?;
    let renew = std::str::from_utf8(answers.renew)
        .ok()
        .filter(|s| !s.contains(['\'', '\\', '$']))
        .ok_or_else(|| {
            BenchError::Setup("the renewal answer cannot be quoted in nginx's config".into())
        })?;
    let conf = format!(
        "worker_processes 2;\ndaemon off;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  keepalive_requests 1000000;\n  client_body_temp_path {d}/body;\n\
           server {{\n    listen 127.0.0.1:{port};\n    root {d}/www;\n\
             location = /get-list {{ default_type application/json; try_files /get-list.json =404; }}\n\
             location = /submit-info {{ default_type application/json; return 200 '{renew}'; }}\n\
           }}\n}}\n",
        d = d.display()
    );
    let conf = write(d, "nginx.conf", conf)?;
    let (conf, prefix, errlog) = (
        conf.to_string_lossy().into_owned(),
        format!("{}/", d.display()),
        d.join("error.log").to_string_lossy().into_owned(),
    );
    ServerProc::start(
        "nginx",
        bin,
        &["-c", &conf, "-p", &prefix, "-e", &errlog],
        port,
        dir,
    )
    .await
}
