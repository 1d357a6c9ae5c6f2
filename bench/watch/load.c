/*
** load.c -- bench/watch's client: PUT load on C keep-alive connections and
** W long-polling GET /watch connections on one libuv loop, so acks and
** watch answers are timed on one clock.
**
**   load HOST PORT CONNS WATCHERS SECONDS SINCE [PREFIX [stream]]
**
** Writers PUT /kv/w/<conn>.<n> (16-byte values) back to back and record
** each acknowledged index's time.  Watchers watch PREFIX (default "w/",
** which every PUT writes under; percent-encoded) from SINCE and re-poll
** with since=next at once; every event index an answer carries gives one
** delay sample: answer received - that index's ack (0 when the answer came
** first).  With "stream", watchers open one &stream=1 answer each instead
** and count events as lines arrive.  Prints one line:
**   RESULT puts=N seconds=S put_p50_us= put_p99_us= answers=N events=N
**          delay_p50_us= delay_p99_us= early=N errors=N
** Memory: everything is allocated once at start and freed by exit.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#define MAXIDX (1u << 22) /* log indexes the ack table covers */
#define NB 200000         /* histogram buckets of 10 us: up to 2 s */

typedef struct cl {
  uv_tcp_t tcp;
  uv_connect_t cr;
  uv_write_t wr;
  int watcher, id, inbody;
  unsigned long n;
  uint64_t since, t0;
  char req[512];
  char *buf;
  size_t len, cap;
} cl;

static uv_loop_t *loop;
static struct sockaddr_in addr;
static char host[64];
static const char *prefix = "w%2F";
static int streams;
static uint64_t *acked; /* ns of the ack of each index, 0: not yet */
static unsigned *put_h, *delay_h;
static unsigned long nputs, answers, events, early, errors;
static int stopping;

static uint64_t now_ns(void) { return uv_hrtime(); }

static void hist(unsigned *h, uint64_t ns) {
  uint64_t b = ns / 10000;
  h[b < NB ? b : NB - 1]++;
}

static double pct(const unsigned *h, double p) {
  unsigned long total = 0, seen = 0;
  for (int i = 0; i < NB; i++) total += h[i];
  for (int i = 0; i < NB; i++)
    if ((seen += h[i]) >= p * total && total) return (i + 0.5) * 10.0;
  return 0;
}

static void send_req(cl *c);
static void count_events(char *body, uint64_t t);

static void on_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  cl *c = h->data;
  (void)sz;
  if (c->cap - c->len < 65536) {
    c->cap = c->cap * 2 + 65536;
    c->buf = realloc(c->buf, c->cap);
  }
  *b = uv_buf_init(c->buf + c->len, (unsigned)(c->cap - c->len - 1));
}

static uint64_t num_after(const char *s, const char *key) {
  const char *p = strstr(s, key);
  return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

static void on_answer(cl *c, int status, char *body) {
  uint64_t t = now_ns();
  if (status != 200) {
    errors++;
    return;
  }
  if (!c->watcher) {
    uint64_t idx = num_after(body, "\"index\":");
    nputs++;
    hist(put_h, t - c->t0);
    if (idx < MAXIDX) acked[idx] = t;
    return;
  }
  answers++;
  count_events(body, t);
  c->since = num_after(body, "\"next\":");
}

static void count_events(char *body, uint64_t t) {
  for (char *p = body; (p = strstr(p, "{\"index\":")) != NULL; p += 9) {
    uint64_t idx = strtoull(p + 9, NULL, 10);
    events++;
    if (idx >= MAXIDX || acked[idx] == 0) {
      early++;
      hist(delay_h, 0);
    } else {
      hist(delay_h, t > acked[idx] ? t - acked[idx] : 0);
    }
  }
}

/* A stream: count the events of every complete line, keep the rest. */
static void stream_read(cl *c) {
  char *end, *last;
  if (!c->inbody) {
    if ((end = strstr(c->buf, "\r\n\r\n")) == NULL) return;
    c->inbody = 1;
    c->len -= (size_t)(end + 4 - c->buf);
    memmove(c->buf, end + 4, c->len + 1);
  }
  if ((last = strrchr(c->buf, '\n')) == NULL) return;
  *last = '\0';
  answers++;
  count_events(c->buf, now_ns());
  c->len -= (size_t)(last + 1 - c->buf);
  memmove(c->buf, last + 1, c->len + 1);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  cl *c = s->data;
  char *end;
  size_t clen, hlen;
  (void)b;
  if (n < 0) {
    if (!stopping) fprintf(stderr, "load: connection lost: %s\n", uv_strerror((int)n));
    errors++;
    uv_close((uv_handle_t *)s, NULL);
    return;
  }
  c->len += (size_t)n;
  c->buf[c->len] = '\0';
  if (c->watcher && streams) {
    stream_read(c);
    return;
  }
  if ((end = strstr(c->buf, "\r\n\r\n")) == NULL) return;
  hlen = (size_t)(end + 4 - c->buf);
  clen = (size_t)num_after(c->buf, "Content-Length: ");
  if (c->len < hlen + clen) return;
  {
    char save = c->buf[hlen + clen];
    c->buf[hlen + clen] = '\0';
    on_answer(c, atoi(c->buf + 9), c->buf + hlen);
    c->buf[hlen + clen] = save;
  }
  memmove(c->buf, c->buf + hlen + clen, c->len - hlen - clen);
  c->len -= hlen + clen;
  if (!stopping) send_req(c);
}

static void on_written(uv_write_t *w, int st) {
  if (st < 0) errors++;
  (void)w;
}

static void send_req(cl *c) {
  uv_buf_t b;
  int n;
  if (c->watcher)
    n = snprintf(c->req, sizeof c->req, "GET /watch?prefix=%s&since=%llu"
                 "&timeout_ms=%s HTTP/1.1\r\nHost: %s\r\n\r\n",
                 prefix, (unsigned long long)c->since,
                 streams ? "3600000&stream=1" : "30000", host);
  else
    n = snprintf(c->req, sizeof c->req, "PUT /kv/w/%d.%lu HTTP/1.1\r\nHost: %s"
                 "\r\nContent-Length: 16\r\n\r\n0123456789abcdef", c->id,
                 c->n++, host);
  c->t0 = now_ns();
  b = uv_buf_init(c->req, (unsigned)n);
  uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, on_written);
}

static void on_connect(uv_connect_t *r, int st) {
  cl *c = r->data;
  if (st < 0) {
    fprintf(stderr, "load: connect: %s\n", uv_strerror(st));
    exit(1);
  }
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  send_req(c);
}

static void on_stop(uv_timer_t *t) {
  (void)t;
  stopping = 1;
  uv_stop(loop);
}

static void start(cl *c) {
  uv_tcp_init(loop, &c->tcp);
  c->tcp.data = c;
  c->cr.data = c;
  uv_tcp_connect(&c->cr, &c->tcp, (struct sockaddr *)&addr, on_connect);
}

int main(int argc, char **argv) {
  int conns, watchers;
  double secs;
  uint64_t since;
  uv_timer_t stop;
  cl *all;
  if (argc < 7 || argc > 9) {
    fprintf(stderr, "usage: load HOST PORT CONNS WATCHERS SECONDS SINCE [PREFIX]\n");
    return 2;
  }
  if (argc >= 8) prefix = argv[7];
  streams = argc == 9 && strcmp(argv[8], "stream") == 0;
  snprintf(host, sizeof host, "%s:%s", argv[1], argv[2]);
  uv_ip4_addr(argv[1], atoi(argv[2]), &addr);
  conns = atoi(argv[3]);
  watchers = atoi(argv[4]);
  secs = atof(argv[5]);
  since = strtoull(argv[6], NULL, 10);
  acked = calloc(MAXIDX, sizeof *acked);
  put_h = calloc(NB, sizeof *put_h);
  delay_h = calloc(NB, sizeof *delay_h);
  all = calloc((size_t)(conns + watchers), sizeof *all);
  loop = uv_default_loop();
  for (int i = 0; i < watchers; i++) { /* watchers first: all parked */
    all[i].watcher = 1;
    all[i].since = since;
    start(&all[i]);
  }
  for (int i = 0; i < conns; i++) {
    all[watchers + i].id = i;
    start(&all[watchers + i]);
  }
  uv_timer_init(loop, &stop);
  uv_timer_start(&stop, on_stop, (uint64_t)(secs * 1000), 0);
  uv_run(loop, UV_RUN_DEFAULT);
  {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("RESULT puts=%lu seconds=%.1f put_p50_us=%.0f put_p99_us=%.0f "
           "answers=%lu events=%lu delay_p50_us=%.0f delay_p99_us=%.0f "
           "early=%lu errors=%lu client_cpu_s=%.2f\n", nputs, secs,
           pct(put_h, 0.5), pct(put_h, 0.99), answers, events,
           pct(delay_h, 0.5), pct(delay_h, 0.99), early, errors,
           ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
               (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
  }
  return 0;
}
