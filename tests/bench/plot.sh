#!/usr/bin/env bash
# make bench-plot: requests/s against connections, for abacus POST and GET and
# the one-round-trip ceilings (no write: GET's; one write: POST's), at the
# default 4 workers per front end, from the sweep's own output
# (build/bench/sweep.txt) into build/bench/throughput.png (gnuplot, Debian's
# gnuplot-nox).
set -eu
cd "$(dirname "$0")/../.."
in=build/bench/sweep.txt
out=build/bench/throughput.png
[ -s "$in" ] || { echo "no $in: run tests/bench/sweep.sh (make bench-sweep) first" >&2; exit 1; }
w=${PLOT_WORKERS:-4}
for what in post get ceiling ceiling_write; do
  awk -v what="$what" -v w="$w" '$1 == what && $2 == w {print $3, $4}' "$in" | sort -n >"build/bench/plot-$what.dat"
done
gnuplot <<GP
set terminal png size 900,540
set output "$out"
set title "abacus vs the one-round-trip ceilings (2 front ends x $w workers, 2 cores)"
set xlabel "connections (in all)"
set ylabel "requests/s"
set logscale x 2
set key right bottom
set yrange [0:*]
set grid
plot "build/bench/plot-ceiling.dat" using 1:2 with linespoints lw 2 title "ceiling: trivial worker + 1 EVALSHA (GET)", \\
     "build/bench/plot-ceiling_write.dat" using 1:2 with linespoints lw 2 title "ceiling: + 1 EVALSHA doing INCR (POST)", \\
     "build/bench/plot-get.dat" using 1:2 with linespoints lw 2 title "abacus GET /abacus/sum", \\
     "build/bench/plot-post.dat" using 1:2 with linespoints lw 2 title "abacus POST /abacus/number"
GP
echo "wrote $out"
