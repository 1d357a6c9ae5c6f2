/*
** loopwatch.c -- busy time per event loop turn (see loopwatch.h).
**
** A prepare callback runs once a turn, just before the poll.  Between two
** of them the loop was either blocked in the poll (idle: libuv counts it
** when the loop is configured with UV_METRICS_IDLE_TIME) or running
** callbacks: the difference is what clients and peers waited for.
*/
#include "loopwatch.h"

#include "rafting/log.h"
#include "rafting/metrics.h"

#define LOG_EVERY_NS 1000000000u

static void held(rf_loopwatch *w, uint64_t now, uint64_t busy) {
  rf_logrec r;
  RF_METRIC_INC(loop_held);
  if (w->logged_ns && now - w->logged_ns < LOG_EVERY_NS) {
    w->unlogged++;
    return;
  }
  rf_log_begin(&r, RF_WARN, "event loop held");
  rf_log_num(&r, "ms", (double)busy / 1e6);
  if (w->unlogged) rf_log_u64(&r, "more", w->unlogged);
  rf_log_end(&r);
  w->logged_ns = now;
  w->unlogged = 0;
}

static void on_prepare(uv_prepare_t *h) {
  rf_loopwatch *w = h->data;
  uint64_t now = uv_hrtime(), idle = uv_metrics_idle_time(h->loop);
  uint64_t turn = now - w->turn_ns, slept = idle - w->idle_ns;
  /* the two clocks are read apart: a turn of pure waiting may come out a
  ** hair below its idle time */
  uint64_t busy = turn > slept ? turn - slept : 0;
  w->turn_ns = now;
  w->idle_ns = idle;
  rf_histo_observe(&rf_metrics_g.loop_busy, busy);
  if (w->warn_ns && busy >= w->warn_ns) held(w, now, busy);
}

int rf_loopwatch_start(rf_loopwatch *w, uv_loop_t *loop, unsigned warn_ms) {
  int rc = uv_loop_configure(loop, UV_METRICS_IDLE_TIME);
  w->started = 0;
  if (rc < 0 || (rc = uv_prepare_init(loop, &w->prepare)) < 0) return rc;
  w->prepare.data = w;
  w->warn_ns = (uint64_t)warn_ms * 1000000u;
  w->logged_ns = w->unlogged = 0;
  w->turn_ns = uv_hrtime();
  w->idle_ns = uv_metrics_idle_time(loop);
  uv_unref((uv_handle_t *)&w->prepare);
  uv_prepare_start(&w->prepare, on_prepare); /* cannot fail once inited */
  w->started = 1;
  return 0;
}

static void on_closed(uv_handle_t *h) {
  rf_loopwatch *w = h->data;
  w->done(w->ud);
}

int rf_loopwatch_close(rf_loopwatch *w, void (*done)(void *ud), void *ud) {
  if (!w->started) return -1;
  w->started = 0;
  w->done = done;
  w->ud = ud;
  uv_close((uv_handle_t *)&w->prepare, on_closed);
  return 0;
}
