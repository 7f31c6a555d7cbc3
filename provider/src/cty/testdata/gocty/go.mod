module strata.invalid/ctyvectors

go 1.23.0

require (
	github.com/zclconf/go-cty v1.16.3
	golang.org/x/text v0.25.0
)

require (
	github.com/apparentlymart/go-textseg/v15 v15.0.0 // indirect
	github.com/vmihailenco/msgpack/v5 v5.3.5 // indirect
	github.com/vmihailenco/tagparser/v2 v2.0.0 // indirect
)
