// A test OpenID provider for the browser tests (tests/browser.py): mockoidc's endpoints on a fixed port with a
// fixed client, and one control route that chooses who the next login is.
//
//	mockoidc -port 5556 -client-id inbox -client-secret secret
//	curl -X POST 'http://127.0.0.1:5556/queue-user?email=alice@example.com&name=alice'
//
// Each login takes the next queued person: the email (verified), and the name as both the subject and the
// preferred username (the name defaults to the email). With none queued, a login is refused (403). The issuer URL is printed on one line once the port listens.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/oauth2-proxy/mockoidc"
)

func main() {
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 0, "port to listen on (0: any free port)")
	clientID := flag.String("client-id", "offload-bridge", "the OAuth client id the relying party uses")
	clientSecret := flag.String("client-secret", "offload-bridge-secret", "that client's secret")
	flag.Parse()

	provider, err := mockoidc.NewServer(nil)
	if err != nil {
		log.Fatal(err)
	}
	provider.ClientID = *clientID
	provider.ClientSecret = *clientSecret

	listener, err := net.Listen("tcp", net.JoinHostPort(*host, fmt.Sprint(*port)))
	if err != nil {
		log.Fatal(err)
	}
	// mockoidc's own Start serves only its OIDC routes; this mux adds the control route beside them. Setting
	// Server is what gives the provider its address, hence its issuer.
	routes := http.NewServeMux()
	var authorizing sync.Mutex
	routes.HandleFunc(mockoidc.AuthorizationEndpoint, func(w http.ResponseWriter, r *http.Request) {
		// One login at a time, and none without a queued person: mockoidc would log a stray visit in as its
		// default user, and a test would reach its app as someone it never chose.
		authorizing.Lock()
		defer authorizing.Unlock()
		provider.UserQueue.Lock()
		waiting := len(provider.UserQueue.Queue)
		provider.UserQueue.Unlock()
		if waiting == 0 {
			http.Error(w, "no person is queued for this login: POST /queue-user first", http.StatusForbidden)
			return
		}
		provider.Authorize(w, r)
	})
	routes.HandleFunc(mockoidc.TokenEndpoint, provider.Token)
	routes.HandleFunc(mockoidc.UserinfoEndpoint, provider.Userinfo)
	routes.HandleFunc(mockoidc.JWKSEndpoint, provider.JWKS)
	routes.HandleFunc(mockoidc.DiscoveryEndpoint, provider.Discovery)
	routes.HandleFunc("POST /queue-user", func(w http.ResponseWriter, r *http.Request) {
		email := r.URL.Query().Get("email")
		if email == "" {
			http.Error(w, "email is required", http.StatusBadRequest)
			return
		}
		name := r.URL.Query().Get("name")
		if name == "" {
			name = email
		}
		// The subject is what oauth2-proxy passes on as X-Forwarded-User.
		provider.QueueUser(&mockoidc.MockUser{
			Subject:           name,
			Email:             email,
			EmailVerified:     true,
			PreferredUsername: name,
		})
		w.WriteHeader(http.StatusNoContent)
	})
	provider.Server = &http.Server{Addr: listener.Addr().String(), Handler: routes}

	fmt.Println(provider.Issuer())
	stop, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	go func() {
		<-stop.Done()
		_ = provider.Server.Shutdown(context.Background())
	}()
	if err := provider.Server.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	os.Exit(0)
}
