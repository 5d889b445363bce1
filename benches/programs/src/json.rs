//! `json`: a serde_json round trip. A document of `scale` nested orders
//! (objects, arrays, strings, numbers, options, maps) is generated,
//! serialized, parsed back into a `serde_json::Value` (walked for the
//! checksum and pretty-printed) and into the typed structs (compared with
//! the original), in documents of 10^4 orders.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::rng::{fold, hash_bytes, Rng};

/// Orders per batch: one document each.
const BATCH: u64 = 10_000;

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Order {
    id: u64,
    customer: Customer,
    items: Vec<Item>,
    note: Option<String>,
    tags: Vec<String>,
    attrs: BTreeMap<String, String>,
    paid: bool,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Customer {
    name: String,
    email: String,
    address: Address,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Address {
    street: String,
    city: String,
    zip: String,
    country: String,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Item {
    sku: String,
    qty: u32,
    price_cents: u64,
    options: Vec<String>,
}

fn order(rng: &mut Rng, id: u64) -> Order {
    let name = rng.words(2, " ");
    let email = format!("{}.{}@example.com", rng.pick(crate::rng::WORDS), id);
    let items = (0..1 + rng.below(6))
        .map(|_| Item {
            sku: format!("SKU-{:08x}", rng.next_u64() as u32),
            qty: 1 + rng.below(20) as u32,
            price_cents: rng.below(100_000),
            options: (0..rng.below(4)).map(|_| rng.words(1, "")).collect(),
        })
        .collect();
    let attrs = (0..rng.below(5))
        .map(|_| (rng.words(1, ""), rng.phrase(1, 3, "-")))
        .collect();
    Order {
        id,
        customer: Customer {
            name,
            email,
            address: Address {
                street: format!("{} {} street", rng.below(999), rng.words(1, "")),
                city: rng.words(1, ""),
                zip: format!("{:05}", rng.below(100_000)),
                country: rng.words(1, ""),
            },
        },
        items,
        note: (rng.below(3) == 0).then(|| rng.phrase(3, 12, " ")),
        tags: (0..rng.below(4)).map(|_| rng.words(1, "")).collect(),
        attrs,
        paid: rng.below(2) == 0,
    }
}

/// Folds every node of `v` into `h`, in document order (maps are sorted).
fn walk(v: &Value, h: u64) -> u64 {
    match v {
        Value::Null => fold(h, 1),
        Value::Bool(b) => fold(h, 2 + u64::from(*b)),
        Value::Number(n) => fold(h, n.as_u64().unwrap_or(4)),
        Value::String(s) => fold(h, hash_bytes(s.as_bytes())),
        Value::Array(a) => a.iter().fold(fold(h, a.len() as u64), |h, v| walk(v, h)),
        Value::Object(o) => o.iter().fold(fold(h, o.len() as u64), |h, (k, v)| {
            walk(v, fold(h, hash_bytes(k.as_bytes())))
        }),
    }
}

pub(crate) fn run(scale: u64) -> u64 {
    let mut rng = Rng::new(0x150a);
    let mut h = 0;
    let mut next_id = 0;
    while next_id < scale {
        let n = BATCH.min(scale - next_id);
        let orders: Vec<Order> = (next_id..next_id + n)
            .map(|id| order(&mut rng, id))
            .collect();
        next_id += n;
        let text = serde_json::to_string(&orders).expect("serializing orders");
        let value: Value = serde_json::from_str(&text).expect("parsing a Value");
        h = walk(&value, fold(h, text.len() as u64));
        let pretty = serde_json::to_string_pretty(&value).expect("printing a Value");
        h = fold(h, pretty.len() as u64);
        let back: Vec<Order> = serde_json::from_str(&pretty).expect("parsing orders");
        assert!(back == orders, "the typed round trip changed the orders");
        let again: Vec<Order> = serde_json::from_value(value).expect("orders from the Value");
        assert!(again == orders, "the Value round trip changed the orders");
    }
    h
}
