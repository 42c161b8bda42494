// Package localcluster runs a whole sccgo cluster on one machine as real OS
// processes: one scc-state, N scc-broker and M scc-frontend binaries, each
// configured through the same environment variables a deployment uses.
//
// It is the engine behind scc-local (a one-command development cluster) and
// the harness for tests and chaos runs that need real processes: it can add,
// stop, kill and restart brokers, kill and restart the state server, and add
// or kill frontends while the cluster runs.
//
// Every child runs in its own process group with a parent-death signal
// (SIGKILL), so it dies with the supervisor even if the supervisor is killed
// without cleaning up. Every child is reaped by a goroutine the Cluster owns;
// a child that exits without being asked is logged with its exit status and
// shows up as Crashed in Procs. Close stops everything: SIGTERM, a bounded
// wait, then SIGKILL, and it returns only when every child has been reaped.
//
// Every child gets, on top of Options.BaseEnv: SCC_AUTH_KEY,
// SCC_INSTANCE_ID (its name: "state", "broker-1", "frontend-1"),
// SCC_INSTANCE_IP, SCC_ADMIN_PORT (metrics and the state's status page),
// SCC_GOSSIP_PORT, SCC_GOSSIP_BIND and SCC_GOSSIP_SEEDS (every other
// node's gossip address); the state server
// SCC_STATE_SERVER_HOST/PORT (its bind address); a broker SCC_BROKER_HOST
// and SCC_BROKER_SERVER_PORT; a frontend SCC_FRONTEND_HOST,
// SOCKETCLUSTER_PORT and SCC_CLIENT_AUTH_KEY; brokers and frontends
// SCC_STATE_SERVER_HOST/PORT pointing at the state server. Options.ExtraEnv
// comes last and overrides any of them.
//
// Each line a child writes to stdout or stderr is copied to Options.Stdout
// prefixed with the child's name ("broker-1 | ..."), colored on a terminal.
//
// Lock order: Cluster.mu is the only lock besides the output writer's; it is
// never held while waiting for a process, doing I/O or calling the logger.
package localcluster
