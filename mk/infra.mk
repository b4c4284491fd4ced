# Infrastructure checks (template.yaml, infra/). The SAM CLI lives in its own venv because its
# pinned dependencies conflict with the runtime's boto3.
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
SAM_STAMP := $(SAM_VENV)/.installed

.PHONY: validate clean-sam

$(SAM_STAMP): infra/requirements-sam.txt
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/pip install --quiet -r infra/requirements-sam.txt
	touch $(SAM_STAMP)

# tests/infra/test_template.py runs `sam validate --lint`, so every test run needs the SAM CLI.
test test-all: $(SAM_STAMP)

## validate: sam validate --lint, cfn-lint and hadolint on template.yaml and infra/Dockerfile
validate: $(SAM_STAMP)
	SAM_CLI_TELEMETRY=0 $(SAM) validate --lint --region us-east-1 --template template.yaml
	$(SAM_VENV)/bin/cfn-lint template.yaml
	$(SAM_VENV)/bin/hadolint infra/Dockerfile

clean: clean-sam

clean-sam:
	rm -rf $(SAM_VENV)
