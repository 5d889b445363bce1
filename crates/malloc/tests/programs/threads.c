/* A multi-threaded C program: producers allocate messages that consumers
   on other threads check and free; rounds of short-lived threads; a
   fork() while other threads allocate. Prints a checksum. With the
   argument `fixed`, the threads that allocate during the forks do a fixed
   number of allocations instead of running until the forks are done, so
   the work done does not depend on how long the forks take (for
   instruction counts). */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAIRS 4
#define MESSAGES 50000
#define RING 256

struct msg {
    uint64_t seq;
    size_t len;
    unsigned char data[];
};

struct ring {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct msg *slots[RING];
    unsigned head, tail;
};

static struct ring rings[PAIRS];
static uint64_t sums[PAIRS];

static void *producer(void *arg) {
    struct ring *r = arg;
    uint64_t x = (uint64_t)(r - rings) * 7919 + 1;
    for (uint64_t i = 0; i < MESSAGES; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        size_t len = 1 + (x >> 33) % 2000;
        struct msg *m = malloc(sizeof *m + len);
        m->seq = i;
        m->len = len;
        memset(m->data, (int)(i & 0xff), len);
        pthread_mutex_lock(&r->lock);
        while (r->head - r->tail == RING) pthread_cond_wait(&r->cond, &r->lock);
        r->slots[r->head++ % RING] = m;
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->lock);
    }
    return NULL;
}

static void *consumer(void *arg) {
    struct ring *r = arg;
    uint64_t sum = 0;
    for (uint64_t i = 0; i < MESSAGES; i++) {
        pthread_mutex_lock(&r->lock);
        while (r->head == r->tail) pthread_cond_wait(&r->cond, &r->lock);
        struct msg *m = r->slots[r->tail++ % RING];
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->lock);
        if (m->seq != i || m->data[m->len - 1] != (unsigned char)(i & 0xff)) {
            fprintf(stderr, "corrupt message %llu\n", (unsigned long long)i);
            exit(2);
        }
        sum += m->len;
        free(m);
    }
    sums[r - rings] = sum;
    return NULL;
}

static void *short_lived(void *arg) {
    void *v[64];
    for (int i = 0; i < 64; i++) v[i] = malloc(16 + (size_t)i * 24);
    for (int i = 0; i < 64; i++) free(v[i]);
    return arg;
}

static volatile int stop;
static int fixed;

static void *churn(void *arg) {
    if (fixed) {
        for (int i = 0; i < 200000; i++) free(malloc(100));
    } else {
        while (!stop) free(malloc(100));
    }
    return arg;
}

int main(int argc, char **argv) {
    fixed = argc > 1 && strcmp(argv[1], "fixed") == 0;
    pthread_t t[2 * PAIRS];
    for (int i = 0; i < PAIRS; i++) {
        pthread_mutex_init(&rings[i].lock, NULL);
        pthread_cond_init(&rings[i].cond, NULL);
        pthread_create(&t[2 * i], NULL, producer, &rings[i]);
        pthread_create(&t[2 * i + 1], NULL, consumer, &rings[i]);
    }
    for (int i = 0; i < 2 * PAIRS; i++) pthread_join(t[i], NULL);
    for (int round = 0; round < 50; round++) {
        pthread_t s[16];
        for (int i = 0; i < 16; i++) pthread_create(&s[i], NULL, short_lived, NULL);
        for (int i = 0; i < 16; i++) pthread_join(s[i], NULL);
    }
    pthread_t c[2];
    for (int i = 0; i < 2; i++) pthread_create(&c[i], NULL, churn, NULL);
    for (int i = 0; i < 20; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            void *p = malloc(1000);
            free(p);
            char *s = strdup("child");
            _exit(strcmp(s, "child") == 0 ? 0 : 3);
        }
        int st;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "fork child failed\n");
            return 4;
        }
    }
    stop = 1;
    for (int i = 0; i < 2; i++) pthread_join(c[i], NULL);
    uint64_t total = 0;
    for (int i = 0; i < PAIRS; i++) total += sums[i];
    printf("%llu\n", (unsigned long long)total);
    return 0;
}
