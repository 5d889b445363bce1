//! `regex`: `scale` generated log lines, in chunks of 2000; for each chunk
//! six regexes and a `RegexSet` are compiled anew (compilation is where
//! regex allocates most), then every line is searched: captures of the
//! timestamp, address and timing fields, a Unicode word class, e-mail
//! addresses replaced (`replace_all`, a new string per line with one), and
//! the set's matches.

use regex::{Regex, RegexSet};

use crate::rng::{fold, hash_bytes, Rng};

/// Lines per chunk: the regexes are compiled once per chunk.
const CHUNK: u64 = 2000;

const LEVELS: &[&str] = &["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"];

fn line(rng: &mut Rng, n: u64) -> String {
    let user = rng.pick(crate::rng::WORDS);
    format!(
        "2026-{:02}-{:02}T{:02}:{:02}:{:02}Z {} req={n} user={user} ip=10.{}.{}.{} \
         msg=\"{}\" email={user}.{}@{}.{} took={}ms",
        1 + rng.below(12),
        1 + rng.below(28),
        rng.below(24),
        rng.below(60),
        rng.below(60),
        rng.pick(LEVELS),
        rng.below(256),
        rng.below(256),
        rng.below(256),
        rng.phrase(2, 10, " "),
        rng.below(100),
        rng.pick(crate::rng::WORDS),
        rng.pick(&["com", "org", "net", "io"]),
        rng.below(5000),
    )
}

/// The regexes of one chunk.
struct Patterns {
    stamp: Regex,
    ip: Regex,
    slow: Regex,
    email: Regex,
    adverb: Regex,
    quoted: Regex,
    set: RegexSet,
}

impl Patterns {
    fn compile() -> Self {
        let re = |p: &str| Regex::new(p).expect("a valid regex");
        Self {
            stamp: re(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z"),
            ip: re(r"\bip=(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\b"),
            slow: re(r"\b(?:WARN|ERROR)\b.*\btook=(\d+)ms"),
            email: re(r"[a-z]+(?:\.[a-z0-9]+)*@[a-z]+\.(?:com|org|net|io)\b"),
            adverb: re(r"\b\w+ly\b"),
            quoted: re(r#"msg="([^"]*)""#),
            set: RegexSet::new([
                r"\bslab\b",
                r"\bmagazine\b.*\bdepot\b",
                r"(?i)KERNEL",
                r"user=(?:alpha|bravo|zulu)\b",
                r"took=[0-9]{4}ms",
                r"\d{3}\.\d+\.\d+",
            ])
            .expect("a valid regex set"),
        }
    }

    /// Searches one line; returns its share of the checksum.
    fn scan(&self, line: &str) -> u64 {
        let mut h = 0;
        if let Some(c) = self.stamp.captures(line) {
            for g in c.iter().skip(1).flatten() {
                h = fold(h, g.as_str().parse().unwrap_or(0));
            }
        }
        if let Some(c) = self.ip.captures(line) {
            let octets: Vec<u64> = c
                .iter()
                .skip(1)
                .flatten()
                .map(|g| g.as_str().parse().unwrap_or(0))
                .collect();
            h = fold(h, octets.iter().fold(0, |a, o| a << 8 | o));
        }
        if let Some(c) = self.slow.captures(line) {
            h = fold(h, c[1].parse().unwrap_or(0));
        }
        let replaced = self.email.replace_all(line, "<redacted>");
        h = fold(h, hash_bytes(replaced.as_bytes()));
        let adverbs: Vec<&str> = self.adverb.find_iter(line).map(|m| m.as_str()).collect();
        h = fold(h, adverbs.len() as u64);
        if let Some(c) = self.quoted.captures(line) {
            let words: Vec<String> = c[1].split(' ').map(str::to_uppercase).collect();
            h = fold(h, hash_bytes(words.join("_").as_bytes()));
        }
        let hits: Vec<usize> = self.set.matches(line).into_iter().collect();
        hits.iter().fold(h, |h, &i| fold(h, i as u64))
    }
}

pub(crate) fn run(scale: u64) -> u64 {
    let mut rng = Rng::new(0x4e6e);
    let mut h = 0;
    let mut n = 0;
    while n < scale {
        let count = CHUNK.min(scale - n);
        let lines: Vec<String> = (n..n + count).map(|i| line(&mut rng, i)).collect();
        n += count;
        let p = Patterns::compile();
        for l in &lines {
            h = fold(h, p.scan(l));
        }
    }
    h
}
