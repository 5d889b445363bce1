# Prints N (the argument, default 200000) pseudo-random lines of a
# number, a word and the line's index: the input of the sort, gzip and xz
# runs. The same N gives the same lines on every machine.
use strict;
use warnings;
no warnings "portable";
my $n = shift // 200000;
my $x = 88172645463325252;
for my $i (0 .. $n - 1) {
    $x ^= ($x << 13) & 0xFFFFFFFFFFFFFFFF;
    $x ^= $x >> 7;
    $x ^= ($x << 17) & 0xFFFFFFFFFFFFFFFF;
    my $len = $x % 12 + 1;
    my $word = join "", map { chr(97 + (($x >> ($_ * 5)) % 26)) } 0 .. $len - 1;
    printf "%d %s %d\n", $x % 1000003, $word, $i;
}
