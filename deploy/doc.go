// Package deploy owns the ways pgswitch is deployed, and the tests that
// check them: the docker-compose "sandwich" at the repository's root (an
// example application behind pgswitch-edge, talking to PostgreSQL through
// pgswitch) with the files it mounts and builds, and the Kubernetes
// manifests in kubernetes/ (three pgswitch instances run as one, peered for
// cancel requests, probed on /healthz and /readyz, configured from a
// ConfigMap they reload). The tests check that the files agree with each
// other and load; none starts a container or a cluster.
//
// It holds no code pgswitch runs; the example application is deploy/app.
package deploy
