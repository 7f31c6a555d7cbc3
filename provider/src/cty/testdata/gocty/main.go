// Command ctyvectors prints test vectors made by go-cty itself: for each case, the type's
// JSON, the value's msgpack (hex) and JSON encodings. The Rust tests in ../../ read its
// output (vectors.jsonl) and check that our codecs read and write the same bytes.
//
// Regenerate: cd provider/src/cty/testdata/gocty && go run . > ../vectors.jsonl
//
// `go run . check < file` is the other direction: it reads values our encoders wrote (see
// generated_values_round_trip_through_go_cty in ../../tests.rs), decodes them with go-cty, encodes them
// again and reports any difference.
package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"

	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
	ctymsgpack "github.com/zclconf/go-cty/cty/msgpack"
)

type vector struct {
	Name    string  `json:"name"`
	Type    string  `json:"type"`
	Msgpack string  `json:"msgpack"`
	JSON    *string `json:"json"`
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "check" {
		check()
		return
	}
	num := cty.MustParseNumberVal
	obj := cty.Object(map[string]cty.Type{
		"id":    cty.String,
		"size":  cty.Number,
		"tags":  cty.Map(cty.String),
		"ids":   cty.List(cty.String),
		"ports": cty.Set(cty.Number),
		"pair":  cty.Tuple([]cty.Type{cty.Bool, cty.String}),
		"extra": cty.DynamicPseudoType,
		"flag":  cty.Bool,
	})
	cases := []struct {
		name string
		ty   cty.Type
		v    cty.Value
	}{
		{"string", cty.String, cty.StringVal("héllo")},
		{"long_string", cty.String, cty.StringVal(fmt.Sprintf("%040d", 7))},
		{"bool", cty.Bool, cty.True},
		{"null_string", cty.String, cty.NullVal(cty.String)},
		{"int_small", cty.Number, cty.NumberIntVal(5)},
		{"int_neg", cty.Number, cty.NumberIntVal(-200)},
		{"int_min", cty.Number, cty.NumberIntVal(math.MinInt64)},
		{"int_max", cty.Number, cty.NumberIntVal(math.MaxInt64)},
		{"uint_max", cty.Number, cty.NumberUIntVal(math.MaxUint64)},
		{"big_int", cty.Number, num("123456789012345678901234567890")},
		{"two_pow_70", cty.Number, num("1180591620717411303424")},
		{"decimal_0_1", cty.Number, num("0.1")},
		{"float_0_1", cty.Number, cty.NumberFloatVal(0.1)},
		{"half", cty.Number, num("0.5")},
		{"tiny", cty.Number, num("1e-30")},
		{"long_decimal", cty.Number, num("12345678901234567890.123456789")},
		{"unknown_string", cty.String, cty.UnknownVal(cty.String)},
		{"unknown_dynamic", cty.DynamicPseudoType, cty.DynamicVal},
		{"refined_prefix", cty.String, cty.UnknownVal(cty.String).Refine().NotNull().StringPrefixFull("ami-").NewValue()},
		{"refined_not_null_bool", cty.Bool, cty.UnknownVal(cty.Bool).Refine().NotNull().NewValue()},
		{"refined_number", cty.Number, cty.UnknownVal(cty.Number).Refine().NotNull().
			NumberRangeLowerBound(cty.Zero, true).NumberRangeUpperBound(num("10.5"), false).NewValue()},
		{"refined_number_big_bound", cty.Number, cty.UnknownVal(cty.Number).Refine().
			NumberRangeUpperBound(num("123456789012345678901234567890"), true).NewValue()},
		{"refined_list_length", cty.List(cty.String), cty.UnknownVal(cty.List(cty.String)).Refine().
			CollectionLengthLowerBound(1).CollectionLengthUpperBound(300).NewValue()},
		{"refined_set_length", cty.Set(cty.Number), cty.UnknownVal(cty.Set(cty.Number)).Refine().NotNull().
			CollectionLengthLowerBound(2).NewValue()},
		{"dynamic_string", cty.DynamicPseudoType, cty.StringVal("hi")},
		{"dynamic_typed_null", cty.DynamicPseudoType, cty.NullVal(cty.Number)},
		{"dynamic_null", cty.DynamicPseudoType, cty.NullVal(cty.DynamicPseudoType)},
		{"dynamic_object", cty.DynamicPseudoType, cty.ObjectVal(map[string]cty.Value{
			"a": cty.ListVal([]cty.Value{cty.NumberIntVal(1)}),
			"b": cty.NullVal(cty.String),
		})},
		{"set_strings", cty.Set(cty.String), cty.SetVal([]cty.Value{cty.StringVal("b"), cty.StringVal("a")})},
		{"empty_list", cty.List(cty.String), cty.ListValEmpty(cty.String)},
		{"map", cty.Map(cty.Number), cty.MapVal(map[string]cty.Value{"x": cty.NumberIntVal(1), "a": num("2.5")})},
		{"object", obj, cty.ObjectVal(map[string]cty.Value{
			"id":    cty.StringVal("c-1"),
			"size":  num("100"),
			"tags":  cty.MapVal(map[string]cty.Value{"env": cty.StringVal("prod")}),
			"ids":   cty.ListVal([]cty.Value{cty.StringVal("s-1"), cty.StringVal("s-2")}),
			"ports": cty.SetVal([]cty.Value{cty.NumberIntVal(3306)}),
			"pair":  cty.TupleVal([]cty.Value{cty.False, cty.StringVal("x")}),
			"extra": cty.MapVal(map[string]cty.Value{"k": cty.True}),
			"flag":  cty.NullVal(cty.Bool),
		})},
		{"object_with_unknowns", obj, cty.ObjectVal(map[string]cty.Value{
			"id":    cty.UnknownVal(cty.String).Refine().NotNull().NewValue(),
			"size":  num("100"),
			"tags":  cty.UnknownVal(cty.Map(cty.String)),
			"ids":   cty.ListVal([]cty.Value{cty.StringVal("s-1"), cty.UnknownVal(cty.String)}),
			"ports": cty.NullVal(cty.Set(cty.Number)),
			"pair":  cty.TupleVal([]cty.Value{cty.UnknownVal(cty.Bool), cty.StringVal("x")}),
			"extra": cty.DynamicVal,
			"flag":  cty.True,
		})},
		{"optional_attrs_type", cty.ObjectWithOptionalAttrs(map[string]cty.Type{"a": cty.String, "b": cty.Number}, []string{"b"}),
			cty.ObjectVal(map[string]cty.Value{"a": cty.StringVal("x"), "b": cty.NullVal(cty.Number)})},
	}
	enc := json.NewEncoder(os.Stdout)
	for _, c := range cases {
		tj, err := c.ty.MarshalJSON()
		if err != nil {
			panic(err)
		}
		mp, err := ctymsgpack.Marshal(c.v, c.ty)
		if err != nil {
			panic(fmt.Sprintf("%s: %s", c.name, err))
		}
		vec := vector{Name: c.name, Type: string(tj), Msgpack: hex.EncodeToString(mp)}
		if c.v.IsWhollyKnown() {
			js, err := ctyjson.Marshal(c.v, c.ty)
			if err != nil {
				panic(fmt.Sprintf("%s: %s", c.name, err))
			}
			s := string(js)
			vec.JSON = &s
		}
		if err := enc.Encode(vec); err != nil {
			panic(err)
		}
	}
}

type dumped struct {
	Type    string  `json:"type"`
	Msgpack string  `json:"msgpack"`
	JSON    *string `json:"json"`
}

func hasSet(ty cty.Type) bool {
	switch {
	case ty.IsSetType():
		return true
	case ty.IsListType(), ty.IsMapType():
		return hasSet(ty.ElementType())
	case ty.IsObjectType():
		for _, at := range ty.AttributeTypes() {
			if hasSet(at) {
				return true
			}
		}
	case ty.IsTupleType():
		for _, et := range ty.TupleElementTypes() {
			if hasSet(et) {
				return true
			}
		}
	case ty == cty.DynamicPseudoType:
		return true // the concrete type may hold sets
	}
	return false
}

func check() {
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	var n, same, setsOK, jsonSame, jsonDiff, refused, fails int
	for sc.Scan() {
		var d dumped
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			panic(err)
		}
		n++
		var ty cty.Type
		if err := ty.UnmarshalJSON([]byte(d.Type)); err != nil {
			fmt.Printf("type %s: %s\n", d.Type, err)
			fails++
			continue
		}
		raw, _ := hex.DecodeString(d.Msgpack)
		func() {
			defer func() {
				if r := recover(); r != nil {
					// go-cty panics on collections whose dynamic elements differ in type
					// and on contradictory refinements; our generator makes both, Terraform
					// never sends them.
					refused++
					if refused <= 3 {
						fmt.Printf("refused %s %s: %v\n", d.Type, d.Msgpack, r)
					}
				}
			}()
			v, err := ctymsgpack.Unmarshal(raw, ty)
			if err != nil {
				fmt.Printf("FAIL decode %s %s: %s\n", d.Type, d.Msgpack, err)
				fails++
				return
			}
			again, err := ctymsgpack.Marshal(v, ty)
			if err != nil {
				fmt.Printf("FAIL re-encode %s: %s\n", d.Type, err)
				fails++
				return
			}
			switch {
			case bytes.Equal(again, raw):
				same++
			case hasSet(ty):
				v2, err := ctymsgpack.Unmarshal(again, ty)
				if err != nil || !v2.RawEquals(v) {
					fmt.Printf("FAIL set value %s\n", d.Msgpack)
					fails++
					return
				}
				setsOK++
			default:
				fmt.Printf("FAIL bytes differ for %s:\n ours %s\n cty  %x\n", d.Type, d.Msgpack, again)
				fails++
				return
			}
			if d.JSON != nil {
				jv, err := ctyjson.Unmarshal([]byte(*d.JSON), ty)
				if err != nil {
					fmt.Printf("FAIL json decode %s %s: %s\n", d.Type, *d.JSON, err)
					fails++
					return
				}
				if jv.Equals(v).True() {
					jsonSame++
				} else {
					jsonDiff++
					fmt.Printf("json value differs %s\n ours %s\n", d.Type, *d.JSON)
				}
			}
		}()
	}
	fmt.Printf("checked %d: msgpack same bytes %d, same value (sets reordered) %d, refused by go-cty (mixed-type collections) %d; json equal %d, json differs %d; failures %d\n",
		n, same, setsOK, refused, jsonSame, jsonDiff, fails)
	if fails > 0 {
		os.Exit(1)
	}
}
