package admin

import (
	"embed"
	"net/http"
)

// The dashboard is three static files embedded in the binary; the page
// polls /v1/status, /v1/nodes and /v1/shared and redraws itself.
//
//go:embed assets/dashboard.html assets/dashboard.js assets/dashboard.css
var assets embed.FS

func dashboardPage() http.Handler {
	return dashboardAsset("dashboard.html", "text/html; charset=utf-8")
}

func dashboardAsset(name, contentType string) http.Handler {
	b, err := assets.ReadFile("assets/" + name)
	if err != nil {
		panic("admin: missing embedded asset " + name) // a build mistake, caught by every test
	}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("Content-Security-Policy", "default-src 'self'")
		w.Write(b)
	})
}
