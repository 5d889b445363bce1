/* The thread count of this process, from /proc/self/status (-1 when it
   cannot be read); for the programs that check whether the allocator
   started a thread of its own. Needs <stdio.h>, <stdlib.h>, <string.h>. */
static int threads(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int n = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "Threads:", 8) == 0) n = atoi(line + 8);
    if (f) fclose(f);
    return n;
}
