//! The upload server: an HTTP server that stores uploaded files and hands each one to the
//! `transfer_to_oss` job, which copies it to object storage.
//!
//! ```text
//! upload-server          the whole demo in one process (below)
//! upload-server serve    the HTTP server only, enqueuing into RabbitMQ for `upload-worker`
//! upload-server --help
//! ```
//!
//! **The demo** (`cargo run -p upload-server`, no arguments) needs no broker and no other
//! step. It runs on the in-memory broker, or on RabbitMQ when `JOBS_AMQP_URL` is set. It starts
//! the worker engine with the bucket as its state and the HTTP server on a free loopback port,
//! then posts four files to itself: two are transferred, `backup.tar.flaky` fails its first
//! attempt (the store times out) and succeeds when retried a second later, and the empty
//! `empty.txt` is fatal and lands in the error queue `uploadserver.trans.oss.err`. It also
//! posts a file over the limit (`413`) and a request that is not a form (`400`), prints every
//! job event as it happens, then the error queue and the bucket, and exits 0 when each upload
//! ended as expected (1 otherwise). Its upload directory and bucket are temporary directories,
//! removed at the end.
//!
//! **`serve`** answers `POST /files` and `GET /healthz` on `UPLOAD_ADDR` (default
//! `127.0.0.1:3000`), stores uploads in `UPLOAD_DIR` (default `upload-server/uploads` under
//! the temporary directory), refuses files over `UPLOAD_MAX_BYTES` (default 10 MiB), and
//! enqueues into RabbitMQ at `JOBS_AMQP_URL` (default the local broker, as guest). It stops on
//! Ctrl-C or SIGTERM.
//!
//! See `docs/upload-server.md` for the server and worker against RabbitMQ, with curl.
#![allow(clippy::print_stdout, reason = "a program that reports what happened")]

mod client;
mod demo;
mod report;
mod serve;
mod signal;

use std::process::ExitCode;

const USAGE: &str = "\
usage: upload-server [serve]

  (no command)  the demo: the worker engine, the HTTP server and four uploads in one process,
                on the in-memory broker, or on RabbitMQ when JOBS_AMQP_URL is set
  serve         the HTTP server only (POST /files, GET /healthz), enqueuing into RabbitMQ

serve's environment:
  UPLOAD_ADDR       where to listen (default 127.0.0.1:3000)
  UPLOAD_DIR        where uploads are stored (default upload-server/uploads in the temp dir)
  UPLOAD_MAX_BYTES  the largest file accepted (default 10485760)
  JOBS_AMQP_URL     the broker (default amqp://guest:guest@127.0.0.1:5672/%2f)
";

#[tokio::main]
async fn main() -> ExitCode {
    // `args_os`: `args` panics on an argument that is not UTF-8.
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let args: Vec<&str> = args.iter().map(|arg| arg.to_str().unwrap_or("?")).collect();
    let result = match args[..] {
        [] => demo::run().await,
        ["serve"] => serve::run().await,
        ["-h" | "--help" | "help"] => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprint!("upload-server: unknown arguments\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("upload-server: {err:#}");
            ExitCode::FAILURE
        }
    }
}
