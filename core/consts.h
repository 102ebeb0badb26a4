/* Limits shared by the engine, the registry and the extension, defined once (the
 * extension exposes them to Python as module constants). */
#ifndef CPROF_CONSTS_H
#define CPROF_CONSTS_H

#define CPROF_MAX_COUNTERS 16   /* counters one profile reads at once */
#define CPROF_MAX_SLOW 64       /* largest K for slow calls (the K slowest per function) */

#endif
