/**
 * @file ctwist.h
 * @brief Umbrella header: includes every public ctwist module.
 *
 * Test helpers (in-memory transports, the pump) are not included here:
 * include "ctwist/testing.h" from tests.
 */
#ifndef CTWIST_CTWIST_H
#define CTWIST_CTWIST_H

#include "ctwist/error.h"
#include "ctwist/log.h"
#include "ctwist/reactor.h"
#include "ctwist/deferred.h"
#include "ctwist/bytes.h"
#include "ctwist/threads.h"
#include "ctwist/protocol.h"
#include "ctwist/transport.h"
#include "ctwist/endpoint.h"
#include "ctwist/resolve.h"
#include "ctwist/process.h"
#include "ctwist/stdio.h"
#include "ctwist/udp.h"
#include "ctwist/basic.h"
#include "ctwist/message.h"
#include "ctwist/jsonrpc.h"
#include "ctwist/wire.h"
#include "ctwist/policies.h"
#include "ctwist/plugin.h"
#include "ctwist/http.h"
#include "ctwist/zk.h"
#include "ctwist/discovery.h"

#endif /* CTWIST_CTWIST_H */
