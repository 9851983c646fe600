// Package deploy owns the docker-compose "sandwich" at the repository's root
// and the files it mounts and builds: an example application behind
// pgswitch-edge, talking to PostgreSQL (a primary and a streaming replica)
// through pgswitch. Its test checks that compose accepts the file and that
// everything it names exists and loads.
//
// It holds no code pgswitch runs; the example application is deploy/app.
package deploy
