// One pull-request comment per marker, created once and then updated in place; used through
// actions/github-script by preview.yml's offline plan and live preview jobs.
//   await require('./.github/scripts/comment.js')({ github, context, core }, marker, file, what)
// A fork's pull request gets a read-only token: the comment then cannot be written, and the
// same text is already in the job summary.
const fs = require('fs');

const LIMIT = 65000; // GitHub refuses comments over 65536 characters

module.exports = async ({ github, context, core }, marker, file, what) => {
  let body = fs.readFileSync(file, 'utf8');
  if (!body.startsWith(marker)) {
    throw new Error(`${file} does not start with ${marker}`);
  }
  if (body.length > LIMIT) {
    body = body.slice(0, LIMIT - 120) + '\n\n_Truncated: the whole text is in the job summary of this run._\n';
  }
  const { owner, repo } = context.repo;
  const issue_number = context.issue.number;
  try {
    const comments = await github.paginate(github.rest.issues.listComments, {
      owner, repo, issue_number, per_page: 100,
    });
    const mine = comments.find(
      (c) => c.user && c.user.type === 'Bot' && (c.body || '').startsWith(marker),
    );
    if (!mine) {
      await github.rest.issues.createComment({ owner, repo, issue_number, body });
      core.info(`created the ${what} comment`);
    } else if (mine.body !== body) {
      await github.rest.issues.updateComment({ owner, repo, comment_id: mine.id, body });
      core.info(`updated the ${what} comment ${mine.id}`);
    } else {
      core.info(`the ${what} comment ${mine.id} is up to date`);
    }
  } catch (error) {
    if (error.status === 403 || error.status === 404) {
      core.notice(`cannot comment on the pull request (${error.status}, read-only token); ` +
        `the ${what} is in the job summary`);
    } else {
      throw error;
    }
  }
};
