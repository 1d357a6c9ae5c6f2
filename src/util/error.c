/*
** error.c -- rf_strerror (see rafting/error.h).
*/
#include <string.h>

#include "rafting/error.h"

static const char *const own[] = {
  "not the leader",
  "larger than the configured bound",
  "another leader's entry took its place; it will never commit",
  "the node is stopping",
  "storage failed; this node no longer takes part",
  "a snapshot covered it; the outcome is unknown",
  "no such command or query",
  "the handler failed",
  "malformed entry or arguments",
  "corrupt data",
  "nothing there",
  "older than what is already kept",
  "the commands script failed to load",
  "the configuration cannot be used",
  "cannot connect",
  "the connection was lost after sending; the outcome is unknown",
  "a malformed answer",
  "a frame from another cluster",
  "a frame that does not unpack",
  "an unknown message type",
  "a field out of range",
  "a message no correct peer sends (forged, or a bug)",
  "a name already taken",
};

const char *rf_strerror(int err) {
  switch (err) { /* the ones the core returns, in its own words */
  case 0: return "success";
  case RF_ENOMEM: return "out of memory";
  case RF_EINVAL: return "invalid argument";
  case RF_EBUSY: return "busy";
  case RF_ETIMEDOUT: return "timed out";
  default: break;
  }
  if (err < RF_E_BASE && err > RF_E_LAST) return own[RF_E_BASE - 1 - err];
  if (err < 0 && err > -4096) return strerror(-err);
  return "unknown error";
}
