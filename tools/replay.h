/* `ballast replay`: run an outage scenario (docs/scenarios.md) against real daemons on loopback
 * and report what clients saw. */
#ifndef BALLAST_REPLAY_H
#define BALLAST_REPLAY_H

/* Exit status of replay_main. */
#define REPLAY_EXIT_OK 0     /* every expectation held */
#define REPLAY_EXIT_FAILED 1 /* an expectation failed */
#define REPLAY_EXIT_ERROR 2  /* bad usage, bad scenario, or the topology could not start */

/* `ballast replay [--speed N] [--out DIR] [--compare] [--bin-dir DIR] [--quiet] [--check] FILE`
 * (argv[0] is "replay"). */
int replay_main(int argc, char **argv);

#endif
