//! A lean HTTP/1.1 load generator for the load scripts.
//!
//! Why not hey or wrk alone: on this 2-core machine the load generator shares the cores with the
//! gateway, and at 3,200 requests/s hey used twice the gateway's CPU, so its goroutine scheduling
//! dominated the tail (`/healthz` p99 4.4 ms). Here each client is one OS thread with one
//! keep-alive connection and blocking I/O, sleeping between requests.
//!
//! With `--rate`, every client sends on a fixed schedule (an open-loop run): a late response
//! does not postpone the next request's intended time, and latency is reported both from the
//! moment the request was sent and from its intended time (the latter counts the waiting a
//! slow response causes for the requests behind it). Without `--rate` the clients send back to
//! back (a closed loop, as wrk does).

mod http;

use std::{
    io::Write as _,
    net::TcpStream,
    sync::Arc,
    time::{Duration, Instant},
};

use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "HTTP/1.1 load generator: fixed-rate or closed-loop clients, latency percentiles")]
struct Args {
    /// Target, `http://127.0.0.1:PORT/path?query` (loopback only).
    url: String,
    /// Concurrent clients, each with its own connection.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Requests per second per client; 0 sends back to back.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Seconds of measured load, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring (connections opened, caches warm).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    #[arg(long, default_value = "GET")]
    method: String,
    /// Request body; every `@N@` in it is replaced by a number unique to the request.
    #[arg(long)]
    body_file: Option<std::path::PathBuf>,
    #[arg(long, default_value = "application/fhir+json")]
    content_type: String,
    /// The status a successful response has; others are counted and the first few printed.
    #[arg(long, default_value_t = 200)]
    expect_status: u16,
}

/// What one client measured.
#[derive(Default)]
struct ClientReport {
    /// Nanoseconds from sending the request to the end of its response.
    from_send: Vec<u64>,
    /// Nanoseconds from the request's intended send time (fixed-rate runs only).
    from_schedule: Vec<u64>,
    /// Nanoseconds the request was sent after its intended time: this client's own wake-up delay
    /// on a busy machine, or a previous response arriving late (fixed-rate runs only).
    lateness: Vec<u64>,
    unexpected: Vec<(u16, String)>,
    unexpected_count: u64,
    reconnects: u64,
}

fn main() {
    let args = Args::parse();
    let target = match http::Target::parse(&args.url) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    };
    let body = args.body_file.as_ref().map(|p| {
        std::fs::read_to_string(p).unwrap_or_else(|e| {
            eprintln!("loadgen: reading {}: {e}", p.display());
            std::process::exit(2)
        })
    });
    let args = Arc::new(args);
    let target = Arc::new(target);
    let body = Arc::new(body);
    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.duration);
    let clients: Vec<_> = (0..args.connections)
        .map(|i| {
            let (args, target, body) = (args.clone(), target.clone(), body.clone());
            std::thread::spawn(move || client(i, &args, &target, body.as_deref(), start, measure_from, end))
        })
        .collect();
    let reports: Vec<ClientReport> = clients.into_iter().map(|c| c.join().expect("client thread")).collect();
    print_summary(&args, &reports);
}

#[allow(clippy::too_many_arguments)]
fn client(
    index: usize,
    args: &Args,
    target: &http::Target,
    body: Option<&str>,
    start: Instant,
    measure_from: Instant,
    end: Instant,
) -> ClientReport {
    let mut report = ClientReport::default();
    let interval = (args.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / args.rate));
    // Spread the clients' schedules evenly over one interval, so that they do not send in step.
    let mut intended = match interval {
        Some(i) => start + i.mul_f64(index as f64 / args.connections as f64),
        None => start,
    };
    let mut connection = None;
    let mut reader = http::ResponseReader::default();
    let mut counter: u64 = 0;
    let run_id = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() % 1_000_000);
    std::thread::sleep(intended.saturating_duration_since(Instant::now()));
    loop {
        if interval.is_some() {
            let now = Instant::now();
            if intended > now {
                std::thread::sleep(intended - now);
            }
        } else {
            intended = Instant::now();
        }
        if intended >= end {
            break;
        }
        counter += 1;
        // Unique across clients and across runs against the same database (the run's start second).
        let unique = run_id * 1_000_000_000_000 + (index as u64 + 1) * 1_000_000_000 + counter;
        let request = target.request(&args.method, &args.content_type, body.map(|b| b.replace("@N@", &unique.to_string())));
        let stream: &mut TcpStream = match &mut connection {
            Some(s) => s,
            None => match TcpStream::connect(target.address()) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    connection.insert(s)
                }
                Err(e) => {
                    eprintln!("loadgen: connecting to {}: {e}", target.address());
                    std::process::exit(1);
                }
            },
        };
        let sent = Instant::now();
        let outcome = stream.write_all(&request).map_err(|e| e.to_string()).and_then(|()| reader.read(stream));
        let done = Instant::now();
        match outcome {
            Ok(response) => {
                if intended >= measure_from {
                    report.from_send.push((done - sent).as_nanos() as u64);
                    if interval.is_some() {
                        report.from_schedule.push((done - intended).as_nanos() as u64);
                        report.lateness.push(sent.saturating_duration_since(intended).as_nanos() as u64);
                    }
                    if response.status != args.expect_status {
                        report.unexpected_count += 1;
                        if report.unexpected.len() < 3 {
                            report.unexpected.push((response.status, response.body_start));
                        }
                    }
                }
                if response.close {
                    connection = None;
                }
            }
            Err(e) => {
                // The connection broke: count it and open a new one for the next request.
                report.reconnects += 1;
                if report.reconnects <= 3 {
                    eprintln!("loadgen: client {index}: {e}");
                }
                connection = None;
                reader = http::ResponseReader::default();
            }
        }
        if let Some(i) = interval {
            intended += i;
        }
    }
    report
}

fn print_summary(args: &Args, reports: &[ClientReport]) {
    let mut from_send: Vec<u64> = reports.iter().flat_map(|r| r.from_send.iter().copied()).collect();
    let mut from_schedule: Vec<u64> = reports.iter().flat_map(|r| r.from_schedule.iter().copied()).collect();
    let mut lateness: Vec<u64> = reports.iter().flat_map(|r| r.lateness.iter().copied()).collect();
    let unexpected: u64 = reports.iter().map(|r| r.unexpected_count).sum();
    let reconnects: u64 = reports.iter().map(|r| r.reconnects).sum();
    let mode = if args.rate > 0.0 {
        format!("{} clients x {} requests/s", args.connections, args.rate)
    } else {
        format!("{} clients back to back", args.connections)
    };
    println!("{mode}, {} s measured after {} s warm-up", args.duration, args.warmup);
    println!(
        "requests: {} ({:.0}/s), unexpected status: {unexpected}, broken connections: {reconnects}",
        from_send.len(),
        from_send.len() as f64 / args.duration
    );
    for (status, body) in reports.iter().flat_map(|r| &r.unexpected).take(3) {
        println!("  status {status}: {body}");
    }
    print_percentiles("latency from send", &mut from_send);
    if args.rate > 0.0 {
        print_percentiles("latency from intended send time", &mut from_schedule);
        print_percentiles("sent after intended time", &mut lateness);
    }
}

fn print_percentiles(label: &str, samples: &mut [u64]) {
    if samples.is_empty() {
        println!("{label}: no samples");
        return;
    }
    samples.sort_unstable();
    let ms = |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1] as f64 / 1e6;
    println!(
        "{label}: p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms",
        ms(0.50),
        ms(0.90),
        ms(0.99),
        ms(0.999),
        ms(1.0)
    );
}
