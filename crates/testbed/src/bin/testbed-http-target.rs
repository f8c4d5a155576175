//! A tiny HTTP server whose answers a test controls through files, to run
//! under the kubelet stand-in in place of the real manager.
//!
//! `testbed-http-target [run] --http-addr IP:PORT [--control DIR] [other args ignored]`
//!
//! It accepts the manager's command line (`run … --http-addr …`), so a
//! scenario can start it as a "manager pod". For a request to `/x/y` it
//! reads `DIR/x_y`: absent → `200 ok`; a number → that status code;
//! `hang` → no answer (the connection stays open). It prints its pid and
//! address on stderr when it listens.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut addr = None;
    let mut control = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--http-addr" | "--listen" => addr = args.next(),
            "--control" => control = args.next().map(PathBuf::from),
            other => {
                if let Some(v) = other.strip_prefix("--http-addr=") {
                    addr = Some(v.to_string());
                } else if let Some(v) = other.strip_prefix("--control=") {
                    control = Some(PathBuf::from(v));
                }
            }
        }
    }
    let Some(addr) = addr else {
        eprintln!("testbed-http-target: --http-addr IP:PORT is required");
        return ExitCode::from(2);
    };
    let listener = match TcpListener::bind(&addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("testbed-http-target: cannot listen on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    eprintln!(
        "testbed-http-target: pid {} listening on {addr}",
        std::process::id()
    );
    for stream in listener.incoming().flatten() {
        let control = control.clone();
        std::thread::spawn(move || serve(stream, control.as_deref()));
    }
    ExitCode::SUCCESS
}

fn serve(mut stream: TcpStream, control: Option<&Path>) {
    let mut line = String::new();
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    // Drain the headers.
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => break,
            Ok(_) if header == "\r\n" || header == "\n" => break,
            Ok(_) => {}
        }
    }
    let name = path.trim_start_matches('/').replace('/', "_");
    let setting = control
        .filter(|_| !name.is_empty())
        .and_then(|dir| std::fs::read_to_string(dir.join(&name)).ok())
        .map(|s| s.trim().to_string());
    let code: u16 = match setting.as_deref() {
        None => 200,
        Some("hang") => {
            // Hold the connection until the client gives up.
            std::thread::sleep(std::time::Duration::from_secs(3600));
            return;
        }
        Some(text) => text.parse().unwrap_or(500),
    };
    let body = if code < 400 { "ok\n" } else { "failing\n" };
    let _ = write!(
        stream,
        "HTTP/1.1 {code} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}
