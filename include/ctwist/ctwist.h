/**
 * @file ctwist.h
 * @brief Umbrella header: includes every public ctwist module.
 */
#ifndef CTWIST_CTWIST_H
#define CTWIST_CTWIST_H

#include "ctwist/error.h"
#include "ctwist/log.h"
#include "ctwist/reactor.h"
#include "ctwist/deferred.h"
#include "ctwist/protocol.h"
#include "ctwist/transport.h"

#endif /* CTWIST_CTWIST_H */
