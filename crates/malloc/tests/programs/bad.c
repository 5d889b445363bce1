/* Bad pointers, one per run (argv[1]): a foreign pointer, a double free,
   a pointer into a block, a pointer into a large block, a realloc of a
   freed block that would stay in place. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char not_ours[64];

int main(int argc, char **argv) {
    if (argc < 2) return 1;
    char *p = malloc(100);
    if (strcmp(argv[1], "foreign") == 0) {
        free(not_ours + 16);
        puts("survived");
    } else if (strcmp(argv[1], "double") == 0) {
        free(p);
        free(p);
        puts("survived");
    } else if (strcmp(argv[1], "interior") == 0) {
        free(p + 8);
        puts("survived");
    } else if (strcmp(argv[1], "large-interior") == 0) {
        char *big = malloc(70000);
        free(big + 4096);
        puts("survived");
    } else if (strcmp(argv[1], "realloc-freed") == 0) {
        free(p);
        char *q = realloc(p, 104);
        char *r = malloc(100);
        printf("survived %d\n", q == r);
    }
    return 0;
}
