// A Go provider built on terraform-plugin-framework with exactly Strata's schema and no I/O:
// the floor that tofu and terraform-plugin-framework set, for scripts/bench-provider to
// measure Strata against (start, `providers schema`, `validate`, `plan`).
//
// The schema is Strata's own `tofu providers schema -json` output, embedded at build time
// (scripts/bench-provider writes schema.json before `go build`), so the two providers have the
// same resource and data source types, attributes, blocks and flags. Plan runs the framework's
// defaults (computed attributes unknown); apply echoes the plan with unknowns made null.
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"log"
	"sort"
	"sync"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	dschema "github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	pschema "github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	rschema "github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
)

//go:embed schema.json
var schemaJSON []byte

type schemasDoc struct {
	ProviderSchemas map[string]providerDoc `json:"provider_schemas"`
}

type providerDoc struct {
	Provider          blockDoc            `json:"provider"`
	ResourceSchemas   map[string]blockDoc `json:"resource_schemas"`
	DataSourceSchemas map[string]blockDoc `json:"data_source_schemas"`
}

type blockDoc struct {
	Block bodyDoc `json:"block"`
}

type bodyDoc struct {
	Attributes map[string]attrDoc      `json:"attributes"`
	BlockTypes map[string]blockTypeDoc `json:"block_types"`
}

type attrDoc struct {
	Type        json.RawMessage `json:"type"`
	Required    bool            `json:"required"`
	Optional    bool            `json:"optional"`
	Computed    bool            `json:"computed"`
	Sensitive   bool            `json:"sensitive"`
	Description string          `json:"description"`
}

type blockTypeDoc struct {
	NestingMode string  `json:"nesting_mode"`
	Block       bodyDoc `json:"block"`
}

// inBlock is b with its attributes optional: the framework checks a required attribute of a
// single nested block even when the block is absent, where Strata (and tofu's own rule for an
// absent block) does not.
func inBlock(b bodyDoc) bodyDoc {
	out := bodyDoc{Attributes: map[string]attrDoc{}, BlockTypes: b.BlockTypes}
	for k, a := range b.Attributes {
		if a.Required {
			a.Required, a.Optional = false, true
		}
		out.Attributes[k] = a
	}
	return out
}

var (
	docOnce sync.Once
	doc     providerDoc
	docErr  error
)

func loadDoc() (providerDoc, error) {
	docOnce.Do(func() {
		var all schemasDoc
		if docErr = json.Unmarshal(schemaJSON, &all); docErr != nil {
			return
		}
		if len(all.ProviderSchemas) != 1 {
			docErr = fmt.Errorf("schema.json holds %d providers, want 1", len(all.ProviderSchemas))
			return
		}
		for _, p := range all.ProviderSchemas {
			doc = p
		}
	})
	return doc, docErr
}

// ctyType turns a cty type in JSON ("string", ["map","string"], ["object",{...}]) into the
// framework's attribute type.
func ctyType(raw json.RawMessage) attr.Type {
	var prim string
	if json.Unmarshal(raw, &prim) == nil {
		switch prim {
		case "string":
			return types.StringType
		case "number":
			return types.NumberType
		case "bool":
			return types.BoolType
		default:
			return types.DynamicType
		}
	}
	var pair []json.RawMessage
	if json.Unmarshal(raw, &pair) != nil || len(pair) != 2 {
		return types.DynamicType
	}
	var kind string
	_ = json.Unmarshal(pair[0], &kind)
	switch kind {
	case "list":
		return types.ListType{ElemType: ctyType(pair[1])}
	case "set":
		return types.SetType{ElemType: ctyType(pair[1])}
	case "map":
		return types.MapType{ElemType: ctyType(pair[1])}
	case "object":
		var fields map[string]json.RawMessage
		_ = json.Unmarshal(pair[1], &fields)
		m := map[string]attr.Type{}
		for k, v := range fields {
			m[k] = ctyType(v)
		}
		return types.ObjectType{AttrTypes: m}
	}
	return types.DynamicType
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func resourceAttr(a attrDoc) rschema.Attribute {
	t := ctyType(a.Type)
	switch tt := t.(type) {
	case types.ListType:
		return rschema.ListAttribute{ElementType: tt.ElemType, Required: a.Required, Optional: a.Optional, Computed: a.Computed, Sensitive: a.Sensitive, Description: a.Description}
	case types.SetType:
		return rschema.SetAttribute{ElementType: tt.ElemType, Required: a.Required, Optional: a.Optional, Computed: a.Computed, Sensitive: a.Sensitive, Description: a.Description}
	case types.MapType:
		return rschema.MapAttribute{ElementType: tt.ElemType, Required: a.Required, Optional: a.Optional, Computed: a.Computed, Sensitive: a.Sensitive, Description: a.Description}
	case types.ObjectType:
		return rschema.ObjectAttribute{AttributeTypes: tt.AttrTypes, Required: a.Required, Optional: a.Optional, Computed: a.Computed, Sensitive: a.Sensitive, Description: a.Description}
	}
	switch t {
	case types.NumberType:
		return rschema.NumberAttribute{Required: a.Required, Optional: a.Optional, Computed: a.Computed, Sensitive: a.Sensitive, Description: a.Description}
	case types.BoolType:
		return rschema.BoolAttribute{Required: a.Required, Optional: a.Optional, Computed: a.Computed, Sensitive: a.Sensitive, Description: a.Description}
	}
	return rschema.StringAttribute{Required: a.Required, Optional: a.Optional, Computed: a.Computed, Sensitive: a.Sensitive, Description: a.Description}
}

func resourceBody(b bodyDoc) (map[string]rschema.Attribute, map[string]rschema.Block) {
	attrs := map[string]rschema.Attribute{}
	for _, k := range sortedKeys(b.Attributes) {
		// The framework declares `id` itself only when asked; Strata's is an ordinary attribute.
		attrs[k] = resourceAttr(b.Attributes[k])
	}
	blocks := map[string]rschema.Block{}
	for _, k := range sortedKeys(b.BlockTypes) {
		bt := b.BlockTypes[k]
		ia, ib := resourceBody(inBlock(bt.Block))
		switch bt.NestingMode {
		case "list":
			blocks[k] = rschema.ListNestedBlock{NestedObject: rschema.NestedBlockObject{Attributes: ia, Blocks: ib}}
		case "set":
			blocks[k] = rschema.SetNestedBlock{NestedObject: rschema.NestedBlockObject{Attributes: ia, Blocks: ib}}
		default:
			blocks[k] = rschema.SingleNestedBlock{Attributes: ia, Blocks: ib}
		}
	}
	return attrs, blocks
}

func dataAttr(a attrDoc) dschema.Attribute {
	t := ctyType(a.Type)
	switch tt := t.(type) {
	case types.ListType:
		return dschema.ListAttribute{ElementType: tt.ElemType, Required: a.Required, Optional: a.Optional, Computed: a.Computed, Sensitive: a.Sensitive, Description: a.Description}
	case types.SetType:
		return dschema.SetAttribute{ElementType: tt.ElemType, Required: a.Required, Optional: a.Optional, Computed: a.Computed, Sensitive: a.Sensitive, Description: a.Description}
	case types.MapType:
		return dschema.MapAttribute{ElementType: tt.ElemType, Required: a.Required, Optional: a.Optional, Computed: a.Computed, Sensitive: a.Sensitive, Description: a.Description}
	case types.ObjectType:
		return dschema.ObjectAttribute{AttributeTypes: tt.AttrTypes, Required: a.Required, Optional: a.Optional, Computed: a.Computed, Sensitive: a.Sensitive, Description: a.Description}
	}
	switch t {
	case types.NumberType:
		return dschema.NumberAttribute{Required: a.Required, Optional: a.Optional, Computed: a.Computed, Sensitive: a.Sensitive, Description: a.Description}
	case types.BoolType:
		return dschema.BoolAttribute{Required: a.Required, Optional: a.Optional, Computed: a.Computed, Sensitive: a.Sensitive, Description: a.Description}
	}
	return dschema.StringAttribute{Required: a.Required, Optional: a.Optional, Computed: a.Computed, Sensitive: a.Sensitive, Description: a.Description}
}

func dataBody(b bodyDoc) (map[string]dschema.Attribute, map[string]dschema.Block) {
	attrs := map[string]dschema.Attribute{}
	for _, k := range sortedKeys(b.Attributes) {
		attrs[k] = dataAttr(b.Attributes[k])
	}
	blocks := map[string]dschema.Block{}
	for _, k := range sortedKeys(b.BlockTypes) {
		bt := b.BlockTypes[k]
		ia, ib := dataBody(inBlock(bt.Block))
		switch bt.NestingMode {
		case "list":
			blocks[k] = dschema.ListNestedBlock{NestedObject: dschema.NestedBlockObject{Attributes: ia, Blocks: ib}}
		case "set":
			blocks[k] = dschema.SetNestedBlock{NestedObject: dschema.NestedBlockObject{Attributes: ia, Blocks: ib}}
		default:
			blocks[k] = dschema.SingleNestedBlock{Attributes: ia, Blocks: ib}
		}
	}
	return attrs, blocks
}

func providerAttr(a attrDoc) pschema.Attribute {
	t := ctyType(a.Type)
	switch tt := t.(type) {
	case types.ListType:
		return pschema.ListAttribute{ElementType: tt.ElemType, Required: a.Required, Optional: a.Optional || a.Computed, Sensitive: a.Sensitive, Description: a.Description}
	case types.SetType:
		return pschema.SetAttribute{ElementType: tt.ElemType, Required: a.Required, Optional: a.Optional || a.Computed, Sensitive: a.Sensitive, Description: a.Description}
	case types.MapType:
		return pschema.MapAttribute{ElementType: tt.ElemType, Required: a.Required, Optional: a.Optional || a.Computed, Sensitive: a.Sensitive, Description: a.Description}
	case types.ObjectType:
		return pschema.ObjectAttribute{AttributeTypes: tt.AttrTypes, Required: a.Required, Optional: a.Optional || a.Computed, Sensitive: a.Sensitive, Description: a.Description}
	}
	switch t {
	case types.NumberType:
		return pschema.NumberAttribute{Required: a.Required, Optional: a.Optional || a.Computed, Sensitive: a.Sensitive, Description: a.Description}
	case types.BoolType:
		return pschema.BoolAttribute{Required: a.Required, Optional: a.Optional || a.Computed, Sensitive: a.Sensitive, Description: a.Description}
	}
	return pschema.StringAttribute{Required: a.Required, Optional: a.Optional || a.Computed, Sensitive: a.Sensitive, Description: a.Description}
}

func providerBody(b bodyDoc) (map[string]pschema.Attribute, map[string]pschema.Block) {
	attrs := map[string]pschema.Attribute{}
	for _, k := range sortedKeys(b.Attributes) {
		attrs[k] = providerAttr(b.Attributes[k])
	}
	blocks := map[string]pschema.Block{}
	for _, k := range sortedKeys(b.BlockTypes) {
		bt := b.BlockTypes[k]
		ia, ib := providerBody(inBlock(bt.Block))
		switch bt.NestingMode {
		case "list":
			blocks[k] = pschema.ListNestedBlock{NestedObject: pschema.NestedBlockObject{Attributes: ia, Blocks: ib}}
		case "set":
			blocks[k] = pschema.SetNestedBlock{NestedObject: pschema.NestedBlockObject{Attributes: ia, Blocks: ib}}
		default:
			blocks[k] = pschema.SingleNestedBlock{Attributes: ia, Blocks: ib}
		}
	}
	return attrs, blocks
}

type peerProvider struct{}

func (p *peerProvider) Metadata(_ context.Context, _ provider.MetadataRequest, resp *provider.MetadataResponse) {
	resp.TypeName = "strata"
}

func (p *peerProvider) Schema(_ context.Context, _ provider.SchemaRequest, resp *provider.SchemaResponse) {
	d, err := loadDoc()
	if err != nil {
		resp.Diagnostics.AddError("schema.json", err.Error())
		return
	}
	a, b := providerBody(d.Provider.Block)
	resp.Schema = pschema.Schema{Attributes: a, Blocks: b}
}

func (p *peerProvider) Configure(context.Context, provider.ConfigureRequest, *provider.ConfigureResponse) {
}

func (p *peerProvider) Resources(context.Context) []func() resource.Resource {
	d, err := loadDoc()
	if err != nil {
		log.Printf("schema.json: %v", err)
		return nil
	}
	var out []func() resource.Resource
	for _, name := range sortedKeys(d.ResourceSchemas) {
		n, s := name, d.ResourceSchemas[name]
		out = append(out, func() resource.Resource { return &peerResource{name: n, doc: s} })
	}
	return out
}

func (p *peerProvider) DataSources(context.Context) []func() datasource.DataSource {
	d, err := loadDoc()
	if err != nil {
		return nil
	}
	var out []func() datasource.DataSource
	for _, name := range sortedKeys(d.DataSourceSchemas) {
		n, s := name, d.DataSourceSchemas[name]
		out = append(out, func() datasource.DataSource { return &peerData{name: n, doc: s} })
	}
	return out
}

type peerResource struct {
	name string
	doc  blockDoc
}

func (r *peerResource) Metadata(_ context.Context, _ resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = r.name
}

func (r *peerResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	a, b := resourceBody(r.doc.Block)
	resp.Schema = rschema.Schema{Attributes: a, Blocks: b}
}

// known replaces every unknown in v by null: what apply must return.
func known(v tftypes.Value) tftypes.Value {
	out, _ := tftypes.Transform(v, func(_ *tftypes.AttributePath, x tftypes.Value) (tftypes.Value, error) {
		if !x.IsKnown() {
			return tftypes.NewValue(x.Type(), nil), nil
		}
		return x, nil
	})
	return out
}

func (r *peerResource) Create(_ context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	resp.State.Raw = known(req.Plan.Raw)
}

func (r *peerResource) Read(_ context.Context, _ resource.ReadRequest, _ *resource.ReadResponse) {}

func (r *peerResource) Update(_ context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	resp.State.Raw = known(req.Plan.Raw)
}

func (r *peerResource) Delete(context.Context, resource.DeleteRequest, *resource.DeleteResponse) {}

type peerData struct {
	name string
	doc  blockDoc
}

func (d *peerData) Metadata(_ context.Context, _ datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = d.name
}

func (d *peerData) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	a, b := dataBody(d.doc.Block)
	resp.Schema = dschema.Schema{Attributes: a, Blocks: b}
}

func (d *peerData) Read(_ context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	resp.State.Raw = known(req.Config.Raw)
}

func main() {
	err := providerserver.Serve(context.Background(), func() provider.Provider { return &peerProvider{} }, providerserver.ServeOpts{
		Address: "registry.opentofu.org/strata/strata",
	})
	if err != nil {
		log.Fatal(err)
	}
}
