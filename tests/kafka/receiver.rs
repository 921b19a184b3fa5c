//! A SET receiver on loopback for the enforcement tests: a small HTTP/1.1 server that records
//! every push request and answers as the test scripts it (accept, fail, hang up, stall).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `Authorization` header.
    pub auth: Option<String>,
    /// `Content-Type` header.
    pub content_type: Option<String>,
    /// The body (a compact JWS).
    pub body: String,
    /// The status answered (`None`: hung up without answering).
    pub answered: Option<u16>,
}

/// How to answer one request.
#[derive(Debug, Clone)]
pub enum Answer {
    /// Status and body, after an optional delay.
    Status(u16, &'static str, Duration),
    /// Close the connection without answering.
    HangUp,
}

type Script = Box<dyn FnMut(usize, &str) -> Answer + Send>;

/// A running receiver.
pub struct Receiver {
    /// Where it listens.
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Request>>>,
    script: Arc<Mutex<Script>>,
}

impl Receiver {
    /// Starts a receiver that answers request `n` (0-based) with body `body` by `script`.
    pub fn start(script: impl FnMut(usize, &str) -> Answer + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Mutex<Script>> = Arc::new(Mutex::new(Box::new(script)));
        let (l, s) = (log.clone(), script.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (l, s) = (l.clone(), s.clone());
                std::thread::spawn(move || serve(conn, &l, &s));
            }
        });
        Self { addr, log, script }
    }

    /// The push URL.
    pub fn url(&self) -> String {
        format!("http://{}/events", self.addr)
    }

    /// Replaces the script (requests are numbered on).
    pub fn rescript(&self, script: impl FnMut(usize, &str) -> Answer + Send + 'static) {
        *self.script.lock().expect("script") = Box::new(script);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().expect("log").clone()
    }

    /// Bodies of the requests answered 2xx, in order.
    pub fn accepted(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| r.answered.is_some_and(|s| (200..300).contains(&s)))
            .map(|r| r.body)
            .collect()
    }
}

fn serve(conn: TcpStream, log: &Mutex<Vec<Request>>, script: &Mutex<Script>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(conn.try_clone().expect("clone stream"));
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let (mut len, mut auth, mut ctype) = (0usize, None, None);
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let v = v.trim().to_owned();
            match k.to_ascii_lowercase().as_str() {
                "content-length" => len = v.parse().unwrap_or(0),
                "authorization" => auth = Some(v),
                "content-type" => ctype = Some(v),
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    let n = log.lock().expect("log").len();
    let answer = (script.lock().expect("script"))(n, &body);
    let answered = match &answer {
        Answer::Status(s, ..) => Some(*s),
        Answer::HangUp => None,
    };
    log.lock().expect("log").push(Request {
        auth,
        content_type: ctype,
        body,
        answered,
    });
    if let Answer::Status(status, text, delay) = answer {
        std::thread::sleep(delay);
        let mut w = conn;
        let _ = write!(
            w,
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        );
        let _ = w.flush();
    }
}
