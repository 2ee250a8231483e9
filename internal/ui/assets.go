package ui

import (
	"bytes"
	"embed"
	"path"
)

//go:embed assets/index.html assets/app.css assets/app.js
var assetFS embed.FS

// Shell is the page every /ui/ address serves: it holds no data; its
// script asks for the page's fragment with the caller's token.
func Shell() []byte {
	b, _ := assetFS.ReadFile("assets/index.html")
	return b
}

// ShellWith is the shell with a page's fragment already in its view, for
// browsers that run no script; the script replaces it with the page as
// the caller's token reads it.
func ShellWith(fragment []byte) []byte {
	if len(fragment) == 0 {
		return Shell()
	}
	return bytes.Replace(Shell(), []byte(`<div id="view"></div>`), append(append([]byte(`<div id="view">`), fragment...), `</div>`...), 1)
}

var contentTypes = map[string]string{
	".css": "text/css; charset=utf-8",
	".js":  "text/javascript; charset=utf-8",
}

// Asset returns a static file of the UI and its content type; ok is false
// for names it does not have. palette.css is generated from Palette.
func Asset(name string) (data []byte, contentType string, ok bool) {
	if name == "palette.css" {
		return []byte(PaletteCSS()), contentTypes[".css"], true
	}
	ct, known := contentTypes[path.Ext(name)]
	if !known || path.Base(name) != name {
		return nil, "", false
	}
	b, err := assetFS.ReadFile("assets/" + name)
	if err != nil {
		return nil, "", false
	}
	return b, ct, true
}

// ContentSecurityPolicy is what the UI's responses send: scripts and
// styles only from the server itself, nothing inline, no frames.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
