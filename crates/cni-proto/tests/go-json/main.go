// Measures Go encoding/json's object-key rules; the table in src/gojson.rs
// records this program's output. Run: go run main.go (Go 1.19, stdlib only).
package main

import (
	"encoding/json"
	"fmt"
	"reflect"
)

// matches reports whether key fills a field whose JSON name is name.
func matches(name, key string) bool {
	t := reflect.StructOf([]reflect.StructField{{
		Name: "F", Type: reflect.TypeOf(""), Tag: reflect.StructTag(fmt.Sprintf(`json:%q`, name)),
	}})
	v := reflect.New(t)
	doc, _ := json.Marshal(map[string]string{key: "x"})
	if err := json.Unmarshal(doc, v.Interface()); err != nil {
		panic(err)
	}
	return v.Elem().Field(0).String() == "x"
}

type Inner struct {
	A string `json:"a"`
	B string `json:"b"`
}

type Doc struct {
	S    string   `json:"s"`
	L    []string `json:"l"`
	P    *Inner   `json:"p"`
	I    Inner    `json:"i"`
	LI   []Inner  `json:"li"`
	N    int      `json:"n"`
	Ab   string   `json:"ab"`
	AB   string   `json:"AB"`
	M    map[string]string `json:"m"`
	Any  interface{} `json:"any"`
}

func main() {
	pairs := [][2]string{
		{"subnet", "subnet"}, {"subnet", "Subnet"}, {"subnet", "SUBNET"}, {"subnet", "ſubnet"}, {"subnet", "SUBNEt"},
		{"subnet", "subnet "}, {"subnet", "sub_net"}, {"rangeStart", "RANGESTART"}, {"rangeStart", "rangestart"},
		{"rangeStart", "range_start"}, {"rangeStart", "rangeſtart"}, {"gw", "GW"}, {"gw", "Gw"}, {"dst", "DST"},
		{"dst", "dſt"}, {"kind", "\u212Aind"}, {"kind", "KIND"}, {"ipam", "IPAM"}, {"ipam", "ıpam"}, {"ipam", "İPAM"},
		{"cni", "CNI"}, {"ips", "IPS"}, {"ips", "ipſ"}, {"containerID", "containerid"}, {"containerID", "CONTAINERID"},
		{"cni.dev/valid-attachments", "CNI.DEV/VALID-ATTACHMENTS"}, {"cni.dev/valid-attachments", "cni.dev/valid_attachments"},
		{"a-b", "a_b"}, {"a.b", "A.B"}, {"é", "É"}, {"x1", "X1"}, {"x1", "x!"}, {"x@", "x`"}, {"ab", "a\u212A"},
		{"straße", "STRASSE"}, {"σ", "Σ"}, {"σ", "ς"}, {"dns", "DNS"}, {"dataDir", "DATADIR"}, {"resolvConf", "resolvconf"},
	}
	for _, p := range pairs {
		fmt.Printf("fold %q %q %v\n", p[0], p[1], matches(p[0], p[1]))
	}
	docs := []string{
		`{"s":"x","s":"y"}`, `{"s":"x","S":"y"}`, `{"S":"x","s":"y"}`, `{"s":"x","s":null}`, `{"s":null}`,
		`{"l":["a"],"l":null}`, `{"l":["a","b"],"l":["c"]}`, `{"p":{"a":"1"},"P":{"b":"2"}}`, `{"p":{"a":"1"},"p":null}`,
		`{"i":{"a":"1"},"i":{"b":"2"}}`, `{"i":{"a":"1"},"i":null}`, `{"li":[{"a":"1"},{"a":"2"}],"li":[{"b":"3"}]}`,
		`{"n":1,"n":null}`, `{"Ab":"x"}`, `{"aB":"x"}`, `{"AB":"x"}`, `{"ab":"x"}`,
		`{"m":{"a":"1"},"m":{"b":"2"}}`, `{"any":{"a":"1"},"any":{"b":"2"}}`, `{"li":[null]}`, `{"n":"5"}`, `{"s":5}`,
	}
	for _, d := range docs {
		var v Doc
		err := json.Unmarshal([]byte(d), &v)
		out, _ := json.Marshal(v)
		fmt.Printf("doc %s -> %s err=%v\n", d, out, err)
	}
}
