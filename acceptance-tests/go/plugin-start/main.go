// Measures provider start -> handshake -> first RPC answered, through go-plugin with AutoMTLS,
// the way tofu and terraform start a provider.
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

type raw struct{ plugin.Plugin }

func (raw) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error { return nil }
func (raw) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return c, nil
}

func main() {
	bin := os.Args[1]
	n, _ := strconv.Atoi(os.Args[2])
	var hs, first []time.Duration
	for i := 0; i < n; i++ {
		t0 := time.Now()
		client := plugin.NewClient(&plugin.ClientConfig{
			HandshakeConfig: plugin.HandshakeConfig{ProtocolVersion: 6, MagicCookieKey: "TF_PLUGIN_MAGIC_COOKIE",
				MagicCookieValue: "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2"},
			Plugins:          map[string]plugin.Plugin{"provider": raw{}},
			Cmd:              exec.Command(bin),
			AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
			AutoMTLS:         true,
			Logger:           hclog.NewNullLogger(),
		})
		rpc, err := client.Client()
		if err != nil {
			fmt.Fprintln(os.Stderr, "start:", err)
			os.Exit(1)
		}
		t1 := time.Now()
		v, err := rpc.Dispense("provider")
		if err != nil {
			fmt.Fprintln(os.Stderr, "dispense:", err)
			os.Exit(1)
		}
		conn := v.(*grpc.ClientConn)
		var out emptypb.Empty
		if err := conn.Invoke(context.Background(), "/tfplugin6.Provider/GetMetadata", &emptypb.Empty{}, &out); err != nil {
			fmt.Fprintln(os.Stderr, "rpc:", err)
			os.Exit(1)
		}
		t2 := time.Now()
		client.Kill()
		hs = append(hs, t1.Sub(t0))
		first = append(first, t2.Sub(t0))
	}
	p := func(d []time.Duration, q float64) time.Duration {
		s := append([]time.Duration(nil), d...)
		sort.Slice(s, func(a, b int) bool { return s[a] < s[b] })
		return s[int(q*float64(len(s)-1))]
	}
	fmt.Printf("start->handshake p50 %.1f ms p90 %.1f ms; start->first RPC answered p50 %.1f ms p90 %.1f ms (n=%d)\n",
		ms(p(hs, .5)), ms(p(hs, .9)), ms(p(first, .5)), ms(p(first, .9)), n)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
