/*
** handover.h -- the graceful stop of a leader: before the node closes, it
** hands leadership to an up-to-date voter and waits (bounded) until another
** node leads, so clients see a new leader instead of an election timeout.
**
** rf_handover_start() borrows the loop and the driver; it owns the small state
** it allocates, freed before done runs.  done is called exactly once: at
** once-ish for a follower, else when another node leads or the deadline
** (two election timeouts) passes.
*/
#ifndef RAFTING_HANDOVER_H
#define RAFTING_HANDOVER_H

#include <uv.h>

#include "rafting/config.h"
#include "rafting/driver.h"

typedef struct rf_handover rf_handover;

/* 0 and *out (valid until done runs), or a negative libuv code (done is
** then not called). */
int rf_handover_start(uv_loop_t *loop, rf_driver *drv, const rf_config *cfg,
                      void (*done)(void *ud, int moved), void *ud,
                      rf_handover **out);
/* Stop waiting (a second signal): done runs soon, with moved = 0.  Call it
** only before done ran. */
void rf_handover_cancel(rf_handover *ho);

#endif
