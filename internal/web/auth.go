package web

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/trainhook/trainhook/internal/authlimit"
)

// Sessions are stateless: the cookie carries a random nonce, its kind and
// its expiry, signed with a key derived from the API token. So the cookie is
// never the token, every instance sharing the token accepts it, and changing
// the token signs everyone out. Without a token the key is random per
// process: the cookie then only anchors the CSRF token.
//
// Every browser gets a session cookie on its first page: a guest one (before
// signing in, or when no token is set) or a signed-in one. The CSRF token of
// every form is an HMAC of the session's nonce, so it is per session and
// needs no storage; signing in issues a new nonce, so a session fixed by
// someone else before login is worth nothing after it.

const (
	sessionTTL     = 30 * 24 * time.Hour
	sessionVersion = 1
	kindGuest      = 'g' // may see pages only when no token is set
	kindSignedIn   = 's' // entered the token
	payloadLen     = 1 + 1 + 16 + 8
	// csrfField and csrfHeader carry the CSRF token in forms and in
	// script-made POSTs to the JSON API.
	csrfField  = "csrf"
	csrfHeader = "X-CSRF-Token"
	// Failed sign-ins allowed per minute in this process. A token is long
	// and random, so this only keeps a guessing loop from running hot.
	maxLoginFailures = 20
)

type session struct {
	nonce   [16]byte
	kind    byte
	expires time.Time
}

type sessions struct {
	key       []byte
	tokenHash [32]byte
	required  bool
	secure    bool

	mu       sync.Mutex
	revoked  map[[16]byte]time.Time // signed out before expiry
	failures []time.Time            // failed sign-ins in the last minute
}

func newSessions(token string, secure bool) *sessions {
	s := &sessions{required: token != "", secure: secure, revoked: map[[16]byte]time.Time{}}
	if token != "" {
		m := hmac.New(sha256.New, []byte(token))
		m.Write([]byte("trainhook dashboard sessions v1"))
		s.key = m.Sum(nil)
		s.tokenHash = sha256.Sum256([]byte(token))
	} else {
		s.key = make([]byte, 32)
		if _, err := rand.Read(s.key); err != nil {
			panic("crypto/rand failed: " + err.Error())
		}
	}
	return s
}

// cookieName uses the __Host- prefix when cookies are Secure: the browser
// then refuses the cookie from any subdomain or path, or over http.
func (s *sessions) cookieName() string {
	if s.secure {
		return "__Host-trainhook_session"
	}
	return "trainhook_session"
}

func (s *sessions) mac(label string, data []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(label))
	m.Write([]byte{0})
	m.Write(data)
	return m.Sum(nil)
}

func (s *sessions) issue(kind byte, now time.Time) (session, *http.Cookie) {
	sess := session{kind: kind, expires: now.Add(sessionTTL).Truncate(time.Second)}
	if _, err := rand.Read(sess.nonce[:]); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	var p [payloadLen]byte
	p[0], p[1] = sessionVersion, kind
	copy(p[2:18], sess.nonce[:])
	binary.BigEndian.PutUint64(p[18:], uint64(sess.expires.Unix()))
	value := base64.RawURLEncoding.EncodeToString(p[:]) + "." + base64.RawURLEncoding.EncodeToString(s.mac("session", p[:]))
	return sess, &http.Cookie{
		Name: s.cookieName(), Value: value, Path: "/", MaxAge: int(sessionTTL / time.Second),
		Secure: s.secure, HttpOnly: true, SameSite: http.SameSiteStrictMode,
	}
}

// read returns the request's session if its cookie is genuine, unexpired
// and not signed out.
func (s *sessions) read(r *http.Request, now time.Time) (session, bool) {
	c, err := r.Cookie(s.cookieName())
	if err != nil {
		return session{}, false
	}
	enc, sig, ok := strings.Cut(c.Value, ".")
	if !ok {
		return session{}, false
	}
	p, err1 := base64.RawURLEncoding.DecodeString(enc)
	got, err2 := base64.RawURLEncoding.DecodeString(sig)
	if err1 != nil || err2 != nil || len(p) != payloadLen || !hmac.Equal(got, s.mac("session", p)) || p[0] != sessionVersion {
		return session{}, false
	}
	sess := session{kind: p[1], expires: time.Unix(int64(binary.BigEndian.Uint64(p[18:])), 0)}
	copy(sess.nonce[:], p[2:18])
	if !now.Before(sess.expires) || sess.kind != kindGuest && sess.kind != kindSignedIn {
		return session{}, false
	}
	s.mu.Lock()
	_, out := s.revoked[sess.nonce]
	s.mu.Unlock()
	return sess, !out
}

// authorized reports whether a session may use the dashboard.
func (s *sessions) authorized(sess session, ok bool) bool {
	return ok && (!s.required || sess.kind == kindSignedIn)
}

// csrf is the session's CSRF token.
func (s *sessions) csrf(sess session) string {
	return base64.RawURLEncoding.EncodeToString(s.mac("csrf", sess.nonce[:]))
}

func (s *sessions) checkCSRF(sess session, got string) bool {
	return got != "" && hmac.Equal([]byte(got), []byte(s.csrf(sess)))
}

// checkToken compares hashes so the time taken does not depend on where
// the guess differs or on its length.
func (s *sessions) checkToken(got string) bool {
	h := sha256.Sum256([]byte(got))
	return s.required && subtle.ConstantTimeCompare(h[:], s.tokenHash[:]) == 1
}

// revoke signs a session out before its cookie expires. The list lives in
// memory: after a restart a copied cookie would work again until it
// expires, which the browser's own copy never does (it is deleted).
func (s *sessions) revoke(sess session, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for n, exp := range s.revoked {
		if !now.Before(exp) {
			delete(s.revoked, n)
		}
	}
	s.revoked[sess.nonce] = sess.expires
}

func (s *sessions) expired() *http.Cookie {
	return &http.Cookie{Name: s.cookieName(), Value: "", Path: "/", MaxAge: -1, Secure: s.secure, HttpOnly: true, SameSite: http.SameSiteStrictMode}
}

// loginAllowed reports whether another sign-in may be tried now.
func (s *sessions) loginAllowed(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := 0
	for i < len(s.failures) && now.Sub(s.failures[i]) > time.Minute {
		i++
	}
	s.failures = s.failures[i:]
	return len(s.failures) < maxLoginFailures
}

func (s *sessions) loginFailed(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = append(s.failures, now)
}

type sessionKey struct{}

func withSession(ctx context.Context, sess session) context.Context {
	return context.WithValue(ctx, sessionKey{}, sess)
}

func sessionOf(r *http.Request) session {
	sess, _ := r.Context().Value(sessionKey{}).(session)
	return sess
}

// handlerFunc is a dashboard handler; an error it returns is rendered by
// fail, the one place that maps errors to pages and status codes.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// maxForm caps a form's body: a training's input may be 256 KiB.
const maxForm = 1 << 20

// page serves a page that needs the dashboard: a session, and the token
// when one is set (else it sends the browser to sign in).
func (s *server) page(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		htmlHeaders(w)
		now := s.now()
		sess, ok := s.sessions.read(r, now)
		if !s.sessions.authorized(sess, ok) && s.sessions.required {
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if !ok {
			var c *http.Cookie
			sess, c = s.sessions.issue(kindGuest, now)
			http.SetCookie(w, c)
		}
		if err := h(w, r.WithContext(withSession(r.Context(), sess))); err != nil {
			s.fail(w, r, err)
		}
	})
}

// form serves a POST from a dashboard page: same origin, an authorized
// session, and the session's CSRF token in the form.
func (s *server) form(h handlerFunc) http.Handler {
	return s.checkedForm(h, true)
}

// guestForm is form for the sign-in form, which needs a session but not an
// authorized one.
func (s *server) guestForm(h handlerFunc) http.Handler {
	return s.checkedForm(h, false)
}

func (s *server) checkedForm(h handlerFunc, needAuth bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		htmlHeaders(w)
		if err := s.origins.Check(r); err != nil {
			s.fail(w, r, errCrossOrigin)
			return
		}
		sess, ok := s.sessions.read(r, s.now())
		switch {
		case !ok:
			s.fail(w, r, errNoSession)
			return
		case needAuth && !s.sessions.authorized(sess, ok):
			s.fail(w, r, httpErrorf(http.StatusUnauthorized, "Sign in first: this dashboard asks for the API token."))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if err := r.ParseForm(); err != nil {
			s.fail(w, r, formError(err))
			return
		}
		if !s.sessions.checkCSRF(sess, r.PostForm.Get(csrfField)) {
			s.fail(w, r, errCSRF)
			return
		}
		if err := h(w, r.WithContext(withSession(r.Context(), sess))); err != nil {
			s.fail(w, r, err)
		}
	})
}

// guest serves the sign-in page: anyone, with a guest session for its form.
func (s *server) guest(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		htmlHeaders(w)
		now := s.now()
		sess, ok := s.sessions.read(r, now)
		if !ok {
			var c *http.Cookie
			sess, c = s.sessions.issue(kindGuest, now)
			http.SetCookie(w, c)
		}
		if err := h(w, r.WithContext(withSession(r.Context(), sess))); err != nil {
			s.fail(w, r, err)
		}
	})
}

// api serves JSON and the event stream. With a token set, a request needs
// either Authorization: Bearer <token> or a signed-in session cookie; a
// POST with the cookie also needs the CSRF token in X-CSRF-Token, since a
// browser sends cookies by itself. Every POST must come from this origin
// when it comes from a browser at all.
func (s *server) api(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		post := r.Method == http.MethodPost
		if post {
			if err := s.origins.Check(r); err != nil {
				s.failJSON(w, r, errCrossOrigin)
				return
			}
		}
		if s.sessions.required {
			bearer, hasBearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			sess, ok := s.sessions.read(r, s.now())
			if hasBearer && s.d.AuthFailures != nil {
				if d, blocked := s.d.AuthFailures.Blocked(r); blocked {
					w.Header().Set("Retry-After", authlimit.RetryAfter(d))
					s.failJSON(w, r, httpErrorf(http.StatusTooManyRequests, "%s", authlimit.Message(d)))
					return
				}
			}
			switch {
			case hasBearer && !s.sessions.checkToken(bearer):
				if s.d.AuthFailures != nil {
					s.d.AuthFailures.Failed(r)
				}
				w.Header().Set("WWW-Authenticate", `Bearer realm="trainhook"`)
				s.failJSON(w, r, httpErrorf(http.StatusUnauthorized, "wrong API token: send the value of TRAINHOOK_API_TOKEN as Authorization: Bearer <token>"))
				return
			case hasBearer:
			case !s.sessions.authorized(sess, ok):
				w.Header().Set("WWW-Authenticate", `Bearer realm="trainhook"`)
				s.failJSON(w, r, httpErrorf(http.StatusUnauthorized, "missing API token: send Authorization: Bearer <TRAINHOOK_API_TOKEN>, or sign in to the dashboard at /login"))
				return
			case post && !s.sessions.checkCSRF(sess, r.Header.Get(csrfHeader)):
				s.failJSON(w, r, httpErrorf(http.StatusForbidden, "a POST with the session cookie needs the page's CSRF token in the "+csrfHeader+" header"))
				return
			}
		}
		if err := h(w, r); err != nil {
			s.failJSON(w, r, err)
		}
	})
}

func (s *server) loginPage(w http.ResponseWriter, r *http.Request) error {
	sess := sessionOf(r)
	next := safeNext(r.URL.Query().Get("next"))
	if !s.sessions.required || sess.kind == kindSignedIn {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return nil
	}
	return s.render(w, r, http.StatusOK, "login", "Sign in", loginView{Next: next})
}

type loginView struct {
	Next  string
	Error string
}

func (s *server) loginSubmit(w http.ResponseWriter, r *http.Request) error {
	next := safeNext(r.PostForm.Get("next"))
	if !s.sessions.required {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return nil
	}
	now := s.now()
	if s.d.AuthFailures != nil {
		if d, blocked := s.d.AuthFailures.Blocked(r); blocked {
			w.Header().Set("Retry-After", authlimit.RetryAfter(d))
			return s.render(w, r, http.StatusTooManyRequests, "login", "Sign in", loginView{Next: next,
				Error: "Too many wrong tokens from this address in the last minute. Try again in " + authlimit.RetryAfter(d) + " seconds."})
		}
	}
	if !s.sessions.loginAllowed(now) {
		return s.render(w, r, http.StatusTooManyRequests, "login", "Sign in", loginView{Next: next,
			Error: "Too many wrong tokens in the last minute. Wait a minute and try again."})
	}
	if !s.sessions.checkToken(r.PostForm.Get("token")) {
		s.sessions.loginFailed(now)
		if s.d.AuthFailures != nil {
			s.d.AuthFailures.Failed(r)
		}
		s.log.Warn("dashboard sign-in refused: wrong token", "remote_addr", r.RemoteAddr)
		return s.render(w, r, http.StatusUnauthorized, "login", "Sign in", loginView{Next: next,
			Error: "That is not the API token. Enter the value of TRAINHOOK_API_TOKEN."})
	}
	s.sessions.revoke(sessionOf(r), now) // the guest session ends here
	_, c := s.sessions.issue(kindSignedIn, now)
	http.SetCookie(w, c)
	s.log.Info("dashboard sign-in", "remote_addr", r.RemoteAddr)
	http.Redirect(w, r, next, http.StatusSeeOther)
	return nil
}

func (s *server) logoutSubmit(w http.ResponseWriter, r *http.Request) error {
	s.sessions.revoke(sessionOf(r), s.now())
	http.SetCookie(w, s.sessions.expired())
	to := "/login"
	if !s.sessions.required {
		to = "/"
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
	return nil
}

// safeNext keeps a post-sign-in redirect on this site: a path, never
// "//host" or a scheme.
func safeNext(next string) string {
	if next == "" || next[0] != '/' || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") ||
		strings.ContainsAny(next, "\r\n\t") || strings.HasPrefix(next, "/login") {
		return "/"
	}
	return next
}
