/*
** metrics_page.h -- the GET /metrics page: the node's live gauges (read from
** the driver and the HTTP server at scrape time) followed by every counter
** and histogram of rafting/metrics.h.  Appends to the caller's buffer.
*/
#ifndef RAFTING_METRICS_PAGE_H
#define RAFTING_METRICS_PAGE_H

#include "rafting/buf.h"
#include "rafting/driver.h"
#include "rafting/http.h"

#define RF_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

void rf_metrics_page(const rf_driver *drv, const rf_http_server *http,
                     rf_buf *b);

#endif
