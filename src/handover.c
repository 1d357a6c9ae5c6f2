/*
** handover.c -- leadership transfer before a stop (see handover.h).
**
** The transfer's outcome shows only in who leads, so a timer polls the
** driver each tick.  A follower, or a leader without a reachable voter to
** take over, is done on the first tick (no waiting).
*/
#include <stdlib.h>

#include "handover.h"
#include "http/cluster.h"
#include "rafting/log.h"

struct rf_handover {
  uv_timer_t timer;
  rf_driver *drv;
  uint64_t self;
  uint64_t deadline;
  int moved;
  void (*done)(void *ud, int moved);
  void *ud;
};

static void on_closed(uv_handle_t *h) {
  rf_handover *ho = h->data;
  void (*done)(void *, int) = ho->done;
  void *ud = ho->ud;
  int moved = ho->moved;
  free(ho);
  done(ud, moved);
}

static void finish(rf_handover *ho, int moved) {
  ho->moved = moved;
  uv_timer_stop(&ho->timer);
  uv_close((uv_handle_t *)&ho->timer, on_closed);
}

static void on_tick(uv_timer_t *t) {
  rf_handover *ho = t->data;
  uint64_t leader = rf_driver_leader(ho->drv);
  if (leader != 0 && leader != ho->self) {
    rf_log(RF_INFO, "handed leadership over to node %llu",
           (unsigned long long)leader);
    finish(ho, 1);
  } else if (uv_now(t->loop) >= ho->deadline) {
    rf_log(RF_WARN, "no other node took over leadership in time; stopping");
    finish(ho, 0);
  }
}

void rf_handover_cancel(rf_handover *ho) {
  if (!uv_is_closing((uv_handle_t *)&ho->timer)) finish(ho, 0);
}

int rf_handover_start(uv_loop_t *loop, rf_driver *drv, const rf_config *cfg,
                      void (*done)(void *ud, int moved), void *ud,
                      rf_handover **out) {
  raft_status st;
  rf_handover *ho;
  uint64_t tick = cfg->tick_ms > 0 ? (uint64_t)cfg->tick_ms : 10, to = 0;
  int rc;
  rf_driver_status(drv, &st);
  if (st.role == RAFT_LEADER && !rf_driver_failed(drv))
    to = rf_cluster_successor(drv);
  if ((ho = calloc(1, sizeof(*ho))) == NULL) return UV_ENOMEM;
  if ((rc = uv_timer_init(loop, &ho->timer)) < 0) {
    free(ho);
    return rc;
  }
  ho->timer.data = ho;
  ho->drv = drv;
  ho->self = st.id;
  ho->done = done;
  ho->ud = ud;
  *out = ho;
  if (to == 0 || rf_driver_transfer(drv, to) < 0) {
    finish(ho, 0); /* a follower, or nobody to take over: stop now */
    return 0;
  }
  rf_log(RF_INFO, "stopping: handing leadership over to node %llu",
         (unsigned long long)to);
  ho->deadline = uv_now(loop) + 2 * tick * (uint64_t)cfg->election_ticks;
  uv_timer_start(&ho->timer, on_tick, tick, tick);
  return 0;
}
