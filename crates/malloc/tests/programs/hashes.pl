# A Perl workload: hashes, arrays, regular expressions, sorting, joins.
use strict;
use warnings;
my %h;
my $seed = 7;
sub rnd { $seed = ($seed * 1103515245 + 12345) % 2147483648; return $seed; }
for my $i (1 .. 200000) {
    my $k = "key" . (rnd() % 50000);
    push @{ $h{$k} }, $i;
}
my $total = 0;
for my $k (sort keys %h) {
    my $s = join(",", @{ $h{$k} });
    $total += length($s);
    $s =~ s/(\d+)/<$1>/g;
    $total += ($s =~ tr/<//);
}
my @big = map { "x" x (rnd() % 5000) } 1 .. 2000;
print scalar(keys %h), " $total ", length(join("", @big)), "\n";
