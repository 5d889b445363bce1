//! `syn`: a generated Rust source of `scale` items (structs with generics
//! and derives, enums, traits, impl blocks of methods with loops, matches,
//! closures and macro calls, modules) parsed with syn's full syntax,
//! walked with `syn::visit`, printed back to tokens and text with `quote`,
//! and the text parsed again.

use core::fmt::Write as _;

use quote::ToTokens;
use syn::visit::{self, Visit};

use crate::rng::{fold, hash_bytes, Rng};

/// The generated source: `items` items, each picked at random.
fn source(rng: &mut Rng, items: u64) -> String {
    let mut s = String::from("//! Generated.\nuse std::collections::HashMap;\n\n");
    for i in 0..items {
        let w = rng.pick(crate::rng::WORDS);
        let k = rng.below(1000);
        // Writing to a String cannot fail.
        let _ = match rng.below(6) {
            0 => writeln!(
                s,
                "#[derive(Debug, Clone, PartialEq)]\npub struct S{i}<T: Clone + Default> {{\n    \
                 pub {w}: Vec<T>,\n    name: Option<String>,\n    map: HashMap<u32, (u8, i64)>,\n    \
                 count: [u16; {k}],\n}}\n"
            ),
            1 => writeln!(
                s,
                "/// Doc for E{i}.\n#[derive(Debug)]\npub enum E{i} {{\n    A(u32),\n    B {{ {w}: i64, y: String }},\n    \
                 C,\n    D(Box<E{i}>, Vec<(u8, char)>),\n}}\n"
            ),
            2 => writeln!(
                s,
                "pub trait T{i}: Send + Sync {{\n    type Out;\n    fn {w}(&self, x: u32) -> Self::Out;\n    \
                 fn twice(&self, x: u32) -> (Self::Out, Self::Out) {{ (self.{w}(x), self.{w}(x + {k})) }}\n}}\n"
            ),
            3 => writeln!(
                s,
                "impl<T: Clone + Default> S{i}<T> {{\n    pub fn {w}_{i}(&self, x: u32) -> u32 {{\n        \
                 let mut acc = x;\n        for k in 0..{k} {{\n            acc = acc.wrapping_mul(31).wrapping_add(k);\n            \
                 if acc % 3 == 0 {{ acc ^= 0x55; }} else if acc > 1_000 {{ acc -= 1; }}\n        }}\n        \
                 match acc {{\n            0 => 1,\n            n if n > 100 => n - 1,\n            _ => acc,\n        }}\n    }}\n}}\n"
            ),
            4 => writeln!(
                s,
                "pub fn f{i}(v: &[u32]) -> Vec<String> {{\n    let base = vec![1, 2, {k}];\n    \
                 v.iter()\n        .filter(|x| **x > base[2])\n        .map(|x| format!(\"{{}}-{w}\", x))\n        \
                 .collect::<Vec<_>>()\n}}\n"
            ),
            _ => writeln!(
                s,
                "pub mod m{i} {{\n    pub const {}: usize = {k};\n    pub static NAME: &str = \"{w}\";\n    \
                 pub fn g<'a>(x: &'a str, y: &'a str) -> &'a str {{ if x.len() > y.len() {{ x }} else {{ y }} }}\n    \
                 #[cfg(test)]\n    mod tests {{ #[test] fn t() {{ assert_eq!(super::g(\"a\", \"bc\"), \"bc\"); }} }}\n}}\n",
                w.to_uppercase()
            ),
        };
    }
    s
}

/// Counts and hashes what the walk meets.
#[derive(Default)]
struct Walker {
    h: u64,
    exprs: u64,
    types: u64,
}

impl<'ast> Visit<'ast> for Walker {
    fn visit_ident(&mut self, i: &'ast syn::Ident) {
        self.h = fold(self.h, hash_bytes(i.to_string().as_bytes()));
    }

    fn visit_expr(&mut self, e: &'ast syn::Expr) {
        self.exprs += 1;
        visit::visit_expr(self, e);
    }

    fn visit_type(&mut self, t: &'ast syn::Type) {
        self.types += 1;
        visit::visit_type(self, t);
    }

    fn visit_lit_int(&mut self, i: &'ast syn::LitInt) {
        self.h = fold(self.h, i.base10_parse::<u64>().unwrap_or(0));
    }
}

fn walk(file: &syn::File) -> u64 {
    let mut w = Walker::default();
    w.visit_file(file);
    fold(fold(fold(w.h, w.exprs), w.types), file.items.len() as u64)
}

pub(crate) fn run(scale: u64) -> u64 {
    let mut rng = Rng::new(0x5e1);
    let src = source(&mut rng, scale);
    let file = syn::parse_file(&src).expect("parsing the generated source");
    let mut h = walk(&file);
    let printed = file.to_token_stream().to_string();
    drop(file);
    h = fold(h, printed.len() as u64);
    let again = syn::parse_file(&printed).expect("parsing the printed source");
    fold(h, walk(&again))
}
