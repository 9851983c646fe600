module github.com/pgswitch/pgswitch/edge

go 1.26.8

require (
	github.com/pgswitch/pgswitch v0.0.0
	go.yaml.in/yaml/v3 v3.0.6
)

replace github.com/pgswitch/pgswitch => ../
