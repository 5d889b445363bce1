/* The C entry points' semantics, checked by the program itself: prints
   "ok" and exits 0, or names the first check that failed and exits 1. The
   same checks pass under glibc. */
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(c)                                                   \
    do {                                                           \
        if (!(c)) {                                                \
            printf("failed: %s (line %d)\n", #c, __LINE__);        \
            return 1;                                              \
        }                                                          \
    } while (0)

static volatile size_t huge = SIZE_MAX / 2 + 1;

int main(void) {
    /* malloc(0): a unique pointer that can be freed. */
    void *a = malloc(0), *b = malloc(0);
    CHECK(a != NULL && b != NULL && a != b);
    free(a);
    free(b);
    free(NULL);
    /* Alignment: 16 for anything past 8 bytes. */
    for (size_t n = 1; n < 5000; n = n * 3 + 1) {
        char *p = malloc(n);
        CHECK(p != NULL);
        CHECK(((uintptr_t)p % (n <= 8 ? 8 : 16)) == 0);
        CHECK(malloc_usable_size(p) >= n);
        memset(p, 0xab, n);
        free(p);
    }
    /* Failures: ENOMEM, null. */
    errno = 0;
    CHECK(malloc(SIZE_MAX) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(calloc(huge, 4) == NULL && errno == ENOMEM);
    /* calloc zeroes, also a block that was used before. */
    for (int r = 0; r < 2; r++) {
        unsigned char *z = calloc(1000, 3);
        CHECK(z != NULL);
        for (int i = 0; i < 3000; i++) CHECK(z[i] == 0);
        memset(z, 0xff, 3000);
        free(z);
    }
    /* realloc: NULL is malloc, growth and shrinking keep the contents,
       0 frees and returns NULL, failure keeps the block. */
    char *r = realloc(NULL, 10);
    CHECK(r != NULL);
    strcpy(r, "kmem");
    size_t sizes[] = {20, 100, 5000, 40000, 1 << 20, 64, 5};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        r = realloc(r, sizes[i]);
        CHECK(r != NULL && strcmp(r, "kmem") == 0);
    }
    errno = 0;
    CHECK(realloc(r, SIZE_MAX) == NULL && errno == ENOMEM);
    CHECK(strcmp(r, "kmem") == 0);
    CHECK(realloc(r, 0) == NULL);
    /* reallocarray: overflow checked. */
    errno = 0;
    char *q = malloc(8);
    CHECK(reallocarray(q, huge, 4) == NULL && errno == ENOMEM);
    q = reallocarray(q, 100, 4);
    CHECK(q != NULL);
    free(q);
    /* posix_memalign: EINVAL for bad alignments, *out untouched. */
    void *out = (void *)1;
    CHECK(posix_memalign(&out, 3, 10) == EINVAL && out == (void *)1);
    CHECK(posix_memalign(&out, 4, 10) == EINVAL && out == (void *)1);
    for (size_t al = 8; al <= (1 << 22); al <<= 1) {
        CHECK(posix_memalign(&out, al, 100) == 0);
        CHECK(((uintptr_t)out % al) == 0);
        memset(out, 1, 100);
        free(out);
    }
    CHECK(posix_memalign(&out, 64, SIZE_MAX - 4096) == ENOMEM);
    /* aligned_alloc, memalign, valloc, pvalloc. */
    /* An alignment that is not a power of two: EINVAL (glibc 2.38 and
       later; older glibc rounds it up, as memalign does). */
    const char *preload = getenv("LD_PRELOAD");
    errno = 0;
    void *odd = aligned_alloc(24, 48);
    if (preload && strstr(preload, "kmem")) {
        CHECK(odd == NULL && errno == EINVAL);
    } else {
        CHECK((odd == NULL && errno == EINVAL) || ((uintptr_t)odd % 32) == 0);
        free(odd);
    }
    void *m = aligned_alloc(256, 1000);
    CHECK(m != NULL && ((uintptr_t)m % 256) == 0);
    free(m);
    m = memalign(24, 100); /* rounded up to 32 */
    CHECK(m != NULL && ((uintptr_t)m % 32) == 0);
    free(m);
    long page = sysconf(_SC_PAGESIZE);
    m = valloc(10);
    CHECK(m != NULL && ((uintptr_t)m % page) == 0);
    free(m);
    m = pvalloc(10);
    CHECK(m != NULL && ((uintptr_t)m % page) == 0 && malloc_usable_size(m) >= (size_t)page);
    free(m);
    CHECK(malloc_usable_size(NULL) == 0);
    puts("ok");
    return 0;
}
