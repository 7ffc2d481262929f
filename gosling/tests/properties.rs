//! Property tests of the gosling CLI's library half.

use gosling::scaffold::{self, EggAnswers, JobAnswers, Prompter, ScaffoldError, PROVIDERS, TYPES};
use proptest::prelude::*;

/// Answers prompts from a script, as a person at a terminal would.
struct Scripted {
    answers: Vec<String>,
    asked: Vec<String>,
}

impl Prompter for Scripted {
    fn input(&mut self, question: &str, _default: &str) -> Result<String, ScaffoldError> {
        self.asked.push(question.into());
        Ok(self.answers.remove(0))
    }
    fn select(
        &mut self,
        question: &str,
        options: &[&str],
        _d: usize,
    ) -> Result<usize, ScaffoldError> {
        self.asked.push(question.into());
        let a = self.answers.remove(0);
        Ok(options
            .iter()
            .position(|o| *o == a)
            .expect("a listed option"))
    }
}

fn egg_answers() -> impl Strategy<Value = EggAnswers> {
    (
        "[a-z][a-z0-9-]{0,20}",
        0..2usize,
        0..2usize,
        1u64..10_000_000,
        proptest::option::of("https://gitlab\\.[a-z]{1,10}\\.com"),
        "vault://[a-z]{1,10}/[a-z-]{1,10}",
        proptest::collection::vec("[a-z][a-z0-9-]{0,8}", 1..4),
        1u32..5,
        (1u64..16).prop_map(|m| m * 256),
    )
        .prop_map(
            |(name, t, p, project_id, gitlab_url, token_secret, tags, cpu, memory)| {
                let provider = PROVIDERS[p].to_string();
                EggAnswers {
                    region: scaffold::default_region(&provider).to_string(),
                    name,
                    kind: TYPES[t].to_string(),
                    provider,
                    project_id,
                    gitlab_url,
                    token_secret,
                    tags,
                    cpu,
                    memory: memory.max(128),
                }
            },
        )
}

/// The prompt answers, in the order `egg_answers` asks, that give `a`.
fn egg_script(a: &EggAnswers) -> Vec<String> {
    vec![
        a.kind.clone(),
        a.provider.clone(),
        a.region.clone(),
        a.project_id.to_string(),
        a.gitlab_url.clone().unwrap_or_default(),
        a.token_secret.clone(),
        a.tags.join(", "),
        a.cpu.to_string(),
        a.memory.to_string(),
    ]
}

fn job_answers() -> impl Strategy<Value = JobAnswers> {
    (
        "[a-z][a-z0-9-]{0,20}",
        (0..60u32, 0..24u32),
        0..2usize,
        proptest::collection::vec("[a-z][a-z0-9]{0,8}", 0..3),
        "[a-z][a-z0-9 ./=-]{0,30}",
    )
        .prop_map(|(name, (m, h), t, tags, script)| JobAnswers {
            name,
            schedule: format!("{m} {h} * * *"),
            runner_type: TYPES[t].to_string(),
            tags,
            script,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    // Property 7: CLI Mode Equivalence — the same answers given as flags or at the prompts
    // produce byte-identical Egg files, and the file passes `fly check`.
    #[test]
    fn property_7_egg_flags_and_prompts_give_the_same_file(a in egg_answers()) {
        let by_flags = scaffold::egg_answers(&a.name, a.as_flags(), None).unwrap();
        let mut script = Scripted { answers: egg_script(&a), asked: Vec::new() };
        let by_prompts = scaffold::egg_answers(&a.name, Default::default(), Some(&mut script)).unwrap();
        prop_assert!(script.answers.is_empty(), "unused answers");
        prop_assert_eq!(&by_flags, &by_prompts);
        let (f, p) = (scaffold::render_egg(&by_flags), scaffold::render_egg(&by_prompts));
        prop_assert_eq!(&f, &p);
        // Formatted, and valid on its own.
        prop_assert_eq!(fly_fmt::format(&f).unwrap(), f.clone());
        let c = fly_types::compile(vec![fly_types::SourceFile::new("Eggs/x.fly", f)], &fly_types::Env::default());
        let errors: Vec<String> = c.diagnostics().filter(|(_, d)| d.is_error()).map(|(_, d)| d.message.clone()).collect();
        prop_assert!(errors.is_empty(), "{:?}", errors);
    }

    // Property 7 for jobs; a flag given skips its prompt.
    #[test]
    fn property_7_job_flags_and_prompts_give_the_same_file(a in job_answers()) {
        let by_flags = scaffold::job_answers(&a.name, a.as_flags(), None).unwrap();
        let mut flags = a.as_flags();
        flags.schedule = None;
        let tags = if a.tags.is_empty() { "".to_string() } else { a.tags.join(",") };
        let mut script = Scripted {
            answers: vec![a.schedule.clone()],
            asked: Vec::new(),
        };
        let mixed = scaffold::job_answers(&a.name, flags, Some(&mut script)).unwrap();
        prop_assert_eq!(script.asked.len(), 1);
        prop_assert_eq!(&by_flags, &mixed);
        let mut all = Scripted {
            answers: vec![a.schedule.clone(), a.runner_type.clone(), tags, a.script.clone()],
            asked: Vec::new(),
        };
        let prompted = scaffold::job_answers(&a.name, Default::default(), Some(&mut all));
        // An empty tag answer takes the default; compare only when tags were given.
        if !a.tags.is_empty() {
            prop_assert_eq!(&by_flags, &prompted.unwrap());
        }
        let text = scaffold::render_job(&by_flags);
        prop_assert_eq!(fly_fmt::format(&text).unwrap(), text.clone());
        let egg = scaffold::render_egg(&scaffold::egg_answers("e", scaffold::EggFlags { project_id: Some(1), tags: Some(a.tags.clone()), ..Default::default() }, None).unwrap());
        let c = fly_types::compile(
            vec![fly_types::SourceFile::new("Jobs/x.fly", text), fly_types::SourceFile::new("Eggs/e.fly", egg)],
            &fly_types::Env::default(),
        );
        let d: Vec<String> = c.diagnostics().map(|(_, d)| d.message.clone()).collect();
        prop_assert!(d.is_empty(), "{:?}", d);
    }
}
