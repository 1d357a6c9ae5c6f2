/*
** test_error.c -- the one error space (rafting/error.h): every module's
** codes are RF_E* codes, no two conditions share a number, and
** rf_strerror names each of them.
*/
#include <string.h>

#include <uv.h>

#include "check.h"
#include "rafting/codec.h"
#include "rafting/error.h"
#include "rafting/forward.h"
#include "rafting/node.h"
#include "rafting/raft.h"
#include "rafting/sm.h"
#include "rafting/snapshot.h"
#include "rafting/transport.h"

static void test_own_codes_are_named_and_distinct(void) {
  for (int e = RF_E_BASE - 1; e > RF_E_LAST; e--) {
    const char *m = rf_strerror(e);
    CHECK(m != NULL && *m != '\0' && strcmp(m, "unknown error") != 0);
    for (int f = e - 1; f > RF_E_LAST; f--) CHECK(strcmp(m, rf_strerror(f)) != 0);
  }
  CHECK(strcmp(rf_strerror(RF_E_LAST), "unknown error") == 0);
}

/* Codes that used to overlap (RAFT_ENOMEM = RF_SM_EFAILED = UV_ENOENT). */
static void test_no_overlap(void) {
  int codes[] = {(int)RAFT_ENOTLEADER, RAFT_ENOMEM, RAFT_EINVAL, RAFT_EBUSY,
                 RAFT_ETOOBIG, RF_SM_ENOTFOUND, RF_SM_EFAILED, RF_SM_EBADENTRY,
                 RF_SNAP_ECORRUPT, RF_SNAP_ENONE, RF_SNAP_ESTALE,
                 RF_FWD_ECONNECT, RF_FWD_ELOST, RF_FWD_EPROTO,
                 RF_CODEC_ECLUSTER, RF_CODEC_EUNPACK, RF_CODEC_ETYPE,
                 RF_CODEC_ERANGE, RF_NODE_ESCRIPT, RF_NODE_ESTORAGE,
                 RF_TRANSPORT_EDOWN, RF_TRANSPORT_ENOPEER};
  size_t n = sizeof(codes) / sizeof(codes[0]);
  for (size_t i = 0; i < n; i++)
    for (size_t j = i + 1; j < n; j++) CHECK(codes[i] != codes[j]);
  CHECK((int)RAFT_ENOMEM == (int)RF_ENOMEM && (int)RF_ENOMEM == (int)UV_ENOMEM);
  CHECK((int)RF_SM_EFAILED != (int)UV_ENOENT);
  CHECK(strcmp(raft_strerror(RAFT_ENOTLEADER), rf_strerror(RF_ENOTLEADER)) == 0);
  CHECK(strcmp(rf_strerror(UV_ECONNREFUSED), "unknown error") != 0);
}

int main(void) {
  test_own_codes_are_named_and_distinct();
  test_no_overlap();
  return check_summary("test_error");
}
