/* What a C malloc must refuse, printed so that the run under kmem can be
   compared with the run under glibc: requests no machine can back, an
   over-aligned one-byte block, and the thread count of a program that
   allocates (no helper thread of the allocator's for a small heap). */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc_threads.h"

int main(void) {
    void *keep[1000];
    for (int i = 0; i < 1000; i++) keep[i] = malloc(16 + (size_t)i * 40);
    printf("threads %d\n", threads());
    void *huge = malloc((size_t)1 << 46);
    void *huge0 = calloc((size_t)1 << 44, 4);
    void *odd = aligned_alloc((size_t)1 << 30, 1);
    printf("huge %s, huge calloc %s, 1 byte aligned to 1 GiB: %s\n",
           huge ? "allocated" : "refused", huge0 ? "allocated" : "refused",
           odd && ((size_t)odd & (((size_t)1 << 30) - 1)) == 0 ? "aligned" : "not aligned");
    free(huge);
    free(huge0);
    free(odd);
    /* A large block, dirtied, freed and calloc'ed again: zeroes. */
    for (int r = 0; r < 3; r++) {
        unsigned char *c = calloc(1, (size_t)4 << 20);
        for (size_t i = 0; i < ((size_t)4 << 20); i += 4093)
            if (c[i] != 0) { puts("dirty calloc"); return 1; }
        memset(c, 0xee, (size_t)4 << 20);
        free(c);
    }
    for (int i = 0; i < 1000; i++) free(keep[i]);
    puts("done");
    return 0;
}
