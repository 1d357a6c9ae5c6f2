/*
** scripts.c -- PUT/GET/DELETE /scripts (see scripts.h).
**
** A script is checked on the leader before it is proposed, against the
** scripts in force there, so a mistake costs a 400 and no log entry.  The
** apply checks again (another change may have come first); then the
** mistake is the entry's result, the same on every replica.
*/
#include <string.h>

#include "http/scripts.h"

#define PATH "/scripts/"
#define PATH_LEN 9

/* The {name} of the path into name (NUL-terminated): 1, or 0 after 400. */
static int path_name(rf_http_req *req, char name[RF_SM_SCRIPT_NAME_MAX + 1]) {
  size_t n = req->path_len - PATH_LEN;
  if (!rf_sm_script_name_ok(req->path + PATH_LEN, n)) {
    rf_http_json_error(req, 400, "bad_request", "a script name is 1..64 of "
                       "A-Z a-z 0-9 _ . - (not starting with '.')");
    return 0;
  }
  memcpy(name, req->path + PATH_LEN, n);
  name[n] = '\0';
  return 1;
}

static void answer_check(rf_http_req *req, int rc, rf_buf *msg) {
  const char *m = msg->p ? msg->p : "out of memory";
  if (rc == RF_SM_ECONFLICT)
    rf_http_json_error(req, 409, "name_conflict", m);
  else if (rc == RF_SM_EBADENTRY)
    rf_http_json_error(req, 400, "bad_script", m);
  else
    rf_http_json_error(req, 500, "internal", m);
}

int rf_scripts_put_entry(rf_sm *sm, rf_http_req *req, uint64_t now_ms,
                         rf_buf *entry) {
  char name[RF_SM_SCRIPT_NAME_MAX + 1];
  rf_sm_arg args[2];
  rf_buf msg;
  int rc;
  if (!path_name(req, name)) return 0;
  rf_buf_init(&msg);
  rc = rf_sm_script_check(sm, name, req->body ? req->body : "", req->body_len,
                          &msg);
  if (rc != 0) {
    answer_check(req, rc, &msg);
    rf_buf_free(&msg);
    return 0;
  }
  rf_buf_free(&msg);
  args[0] = (rf_sm_arg){"name", name, strlen(name)};
  args[1] = (rf_sm_arg){"source", req->body ? req->body : "", req->body_len};
  rf_sm_encode_args(entry, "script.put", now_ms, args, 2);
  return 1;
}

int rf_scripts_delete_entry(rf_sm *sm, rf_http_req *req, uint64_t now_ms,
                            rf_buf *entry) {
  char name[RF_SM_SCRIPT_NAME_MAX + 1];
  size_t len;
  rf_sm_arg arg;
  if (!path_name(req, name)) return 0;
  if (rf_sm_script_source(sm, name, &len) == NULL) {
    rf_http_json_error(req, 404, "not_found", "no such script");
    return 0;
  }
  arg = (rf_sm_arg){"name", name, strlen(name)};
  rf_sm_encode_args(entry, "script.delete", now_ms, &arg, 1);
  return 1;
}

void rf_scripts_list(rf_sm *sm, rf_http_req *req) {
  rf_buf b;
  rf_buf_init(&b);
  rf_sm_scripts_json(sm, &b);
  rf_buf_str(&b, "\n");
  if (b.oom) rf_http_json_error(req, 500, "internal", "out of memory");
  else rf_http_respond(req, 200, "application/json", b.p, b.n);
  rf_buf_free(&b);
}

void rf_scripts_source(rf_sm *sm, rf_http_req *req) {
  char name[RF_SM_SCRIPT_NAME_MAX + 1];
  const char *src;
  size_t len;
  if (!path_name(req, name)) return;
  if ((src = rf_sm_script_source(sm, name, &len)) == NULL) {
    rf_http_json_error(req, 404, "not_found", "no such script");
    return;
  }
  rf_http_respond(req, 200, "text/plain; charset=utf-8", src, len);
}
