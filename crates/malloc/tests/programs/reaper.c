/* The reaper thread starts only once the heap passes its threshold: the
   thread count after small allocations, then after 160 MiB of them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc_threads.h"

int main(void) {
    static void *small[1000], *big[160];
    for (int i = 0; i < 1000; i++) small[i] = malloc(64);
    int before = threads();
    for (int i = 0; i < 160; i++) big[i] = malloc(1 << 20);
    printf("%d %d\n", before, threads());
    for (int i = 0; i < 160; i++) free(big[i]);
    for (int i = 0; i < 1000; i++) free(small[i]);
    return 0;
}
