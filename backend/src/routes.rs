//! The documented routes, read once from the spec: to tell a wrong method (405, with `Allow`)
//! from an unknown path (404), to point a caller of the Next.js seed's paths at Tollgate's, and
//! to name the query parameter a query string fails on.

use actix_web::http::Method;
use utoipa::openapi::{RefOr, path::ParameterIn};

use crate::error::ParamType;

struct Route {
    segments: Vec<String>,
    /// Each method the path takes, with its typed query parameters.
    methods: Vec<(Method, Vec<(String, ParamType)>)>,
}

/// The documented paths and their methods.
pub struct KnownRoutes(Vec<Route>);

impl KnownRoutes {
    pub fn from_spec(api: &utoipa::openapi::OpenApi) -> Self {
        let routes = api
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let segments = path.trim_matches('/').split('/').map(str::to_owned).collect();
                let methods = [
                    (Method::GET, &item.get),
                    (Method::POST, &item.post),
                    (Method::PUT, &item.put),
                    (Method::PATCH, &item.patch),
                    (Method::DELETE, &item.delete),
                ]
                .into_iter()
                .filter_map(|(method, operation)| {
                    let operation = operation.as_ref()?;
                    let params = operation
                        .parameters
                        .iter()
                        .flatten()
                        .filter_map(|parameter| {
                            let RefOr::T(parameter) = parameter else { return None };
                            if !matches!(parameter.parameter_in, ParameterIn::Query) {
                                return None;
                            }
                            let schema = serde_json::to_value(parameter.schema.as_ref()?).ok()?;
                            Some((parameter.name.clone(), ParamType::of(&schema)?))
                        })
                        .collect();
                    Some((method, params))
                })
                .collect();
                Route { segments, methods }
            })
            .collect();
        Self(routes)
    }

    fn matching<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a Route> + 'a {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        self.0.iter().filter(move |route| {
            route.segments.len() == parts.len()
                && route.segments.iter().zip(&parts).all(|(s, p)| (s.starts_with('{') && !p.is_empty()) || s == p)
        })
    }

    /// The methods a path accepts (`HEAD` wherever `GET`), if it is a known path.
    pub fn allowed(&self, path: &str) -> Option<Vec<Method>> {
        let mut allowed: Vec<Method> = Vec::new();
        for route in self.matching(path) {
            for (method, _) in &route.methods {
                allowed.push(method.clone());
                if method == Method::GET {
                    allowed.push(Method::HEAD);
                }
            }
        }
        (!allowed.is_empty()).then_some(allowed)
    }

    /// The typed query parameters of `method path`.
    pub fn query_params(&self, method: &Method, path: &str) -> Vec<(String, ParamType)> {
        self.matching(path)
            .flat_map(|route| route.methods.iter())
            .filter(|(m, _)| m == method)
            .flat_map(|(_, params)| params.iter().cloned())
            .collect()
    }
}
