//! `channel`: 4 producer/consumer pairs of threads on crossbeam-channel's
//! bounded channels (256 slots). Each producer sends `scale` boxed
//! messages (a header, a name string and a payload of 8-512 bytes); its
//! consumer checks and hashes them and drops them, so every message is
//! allocated on one thread and freed on another.

use std::thread;

use crossbeam_channel::bounded;

use crate::rng::{fold, hash_bytes, Rng};

/// Producer/consumer pairs.
const PAIRS: u64 = 4;

/// One message.
struct Message {
    seq: u64,
    name: String,
    payload: Vec<u8>,
}

pub(crate) fn run(scale: u64) -> u64 {
    let consumers: Vec<_> = (0..PAIRS)
        .map(|pair| {
            let (tx, rx) = bounded::<Box<Message>>(256);
            thread::spawn(move || {
                let mut rng = Rng::new(0xc4a0 + pair);
                for seq in 0..scale {
                    let len = 8 + rng.below(505) as usize;
                    let msg = Box::new(Message {
                        seq,
                        name: format!("pair{pair}-{}", rng.pick(crate::rng::WORDS)),
                        payload: vec![(seq % 251) as u8; len],
                    });
                    tx.send(msg).expect("the consumer hung up");
                }
            });
            thread::spawn(move || {
                let mut h = 0;
                for (expect, msg) in (0..).zip(rx) {
                    assert_eq!(msg.seq, expect, "a message out of order");
                    h = fold(
                        h,
                        hash_bytes(msg.name.as_bytes()) ^ msg.payload.len() as u64,
                    );
                    h = fold(h, u64::from(msg.payload[msg.payload.len() - 1]));
                }
                h
            })
        })
        .collect();
    // Each pair's checksum is deterministic; add them up.
    consumers.into_iter().fold(0, |a, c| {
        a.wrapping_add(c.join().expect("a consumer panicked"))
    })
}
