//! Sign-in and sign-out. Sign-in is throttled per account and per client address, costs the
//! same for unknown users as for wrong passwords, and is protected against login CSRF by a
//! double-submit cookie (there is no session yet to hold a token).

use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use cookie::{Cookie, SameSite};
use serde::Deserialize;

use super::forms::safe_next;
use super::{
    client_of, cookie_value, render, see_other, Nav, OverTls, WebError, WebQuery, WebSession,
};
use crate::accounts;
use crate::error::Error;
use crate::http::AppState;

pub const SESSION_COOKIE: &str = "anchorage_session";
const LOGIN_CSRF_COOKIE: &str = "anchorage_login_csrf";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024))
}

#[derive(askama::Template)]
#[template(path = "login.html", config = "src/http/web/askama.toml")]
struct LoginPage {
    nav: Nav,
    next: String,
    username: String,
    csrf: String,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

fn cookie_header(c: Cookie<'_>) -> HeaderValue {
    HeaderValue::from_str(&c.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn base_cookie(name: &'static str, value: String, tls: bool) -> Cookie<'static> {
    Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(tls)
        .build()
}

fn login_form(next: String, username: String, error: Option<String>, tls: bool) -> Response {
    let csrf = match accounts::random_secret() {
        Ok(c) => c,
        Err(e) => return WebError::from(e).into_response(),
    };
    let page = LoginPage {
        nav: Nav::for_role(None, "/login"),
        next,
        username,
        csrf: csrf.clone(),
        error,
    };
    let mut r = render(&page, true);
    let mut c = base_cookie(LOGIN_CSRF_COOKIE, csrf, tls);
    c.set_max_age(time::Duration::minutes(30));
    r.headers_mut().append(header::SET_COOKIE, cookie_header(c));
    r
}

async fn login_page(parts: Parts, WebQuery(q): WebQuery<NextQuery>) -> Response {
    let tls = parts.extensions.get::<OverTls>().is_some();
    login_form(safe_next(q.next.as_deref()), String::new(), None, tls)
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    next: String,
    #[serde(default)]
    csrf: String,
}

impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginForm")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

fn too_many(until: time::OffsetDateTime, now: time::OffsetDateTime) -> Response {
    let wait = (until - now).whole_seconds().max(1);
    let mut r = WebError::status(
        StatusCode::TOO_MANY_REQUESTS,
        format!("Too many failed sign-ins. Try again in {wait} seconds."),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

async fn login(
    State(state): State<AppState>,
    parts: Parts,
    Form(form): Form<LoginForm>,
) -> Response {
    let tls = parts.extensions.get::<OverTls>().is_some();
    let client = client_of(&parts);
    let next = safe_next(Some(&form.next));
    let username = form.username.trim().to_ascii_lowercase();
    if !login_csrf_ok(&parts.headers, &form.csrf) {
        return login_form(
            next,
            username,
            Some("The sign-in form expired; please try again.".into()),
            tls,
        );
    }
    let keys = vec![format!("user:{username}"), format!("client:{client}")];
    let now = state.authority.now();
    if let Some(until) = state.web.throttle.blocked_until(&keys, now) {
        return too_many(until, now);
    }
    let authority = state.authority.clone();
    let password = zeroize::Zeroizing::new(form.password);
    let (u, c) = (username.clone(), client.clone());
    let result = tokio::task::spawn_blocking(move || authority.sign_in(&u, &password, &c)).await;
    match result {
        Ok(Ok((secret, _))) => {
            if let Some(key) = keys.first() {
                state.web.throttle.succeed(key);
            }
            let mut r = see_other(&next);
            let mut c = base_cookie(SESSION_COOKIE, secret.to_string(), tls);
            // The browser may keep it for the absolute lifetime; the server ends it earlier
            // when idle.
            c.set_max_age(time::Duration::hours(i64::from(
                state.authority.config().web.session_absolute_hours,
            )));
            r.headers_mut().append(header::SET_COOKIE, cookie_header(c));
            r.headers_mut().append(
                header::SET_COOKIE,
                cookie_header(expired(LOGIN_CSRF_COOKIE, tls)),
            );
            r
        }
        Ok(Err(Error::Unauthorised(message))) => {
            state.web.throttle.fail(&keys, now);
            let mut r = login_form(next, username, Some(capitalise(&message)), tls);
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            r
        }
        Ok(Err(e)) => WebError::from(e).into_response(),
        Err(e) => {
            WebError::from(Error::Generation(format!("sign-in task failed: {e}"))).into_response()
        }
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str() + ".",
        None => String::new(),
    }
}

fn login_csrf_ok(headers: &HeaderMap, presented: &str) -> bool {
    cookie_value(headers, LOGIN_CSRF_COOKIE).is_some_and(|expected| {
        !presented.is_empty()
            && aws_lc_rs::constant_time::verify_slices_are_equal(
                expected.as_bytes(),
                presented.as_bytes(),
            )
            .is_ok()
    })
}

fn expired(name: &'static str, tls: bool) -> Cookie<'static> {
    let mut c = base_cookie(name, String::new(), tls);
    c.make_removal();
    c
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(state): State<AppState>,
    session: WebSession,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(e) = session.check_csrf(&form.csrf) {
        return e.into_response();
    }
    if let Err(e) = state
        .authority
        .sign_out(&session.signed_in, &session.client)
    {
        return WebError::from(e).into_response();
    }
    let mut r = see_other("/");
    r.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(expired(SESSION_COOKIE, session.tls)),
    );
    r
}
